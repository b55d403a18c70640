//! `${VAR}` expansion in the config text, before YAML parsing, so that parse errors still
//! point at real lines and columns. `$$` is a literal `$`.

use super::ConfigError;

/// Expands `${NAME}` from `lookup`, outside YAML comments. An unset variable is an error
/// that names it and its line: silently substituting an empty string would turn a typo into
/// a wrong endpoint or role.
pub fn expand(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let (code, comment) = line.split_at(comment_start(line));
        expand_line(code, i + 1, &lookup, &mut out)?;
        out.push_str(comment);
    }
    Ok(out)
}

/// Where a YAML comment starts in `line` (its length if none): a `#` at the start or after
/// whitespace, outside quotes.
fn comment_start(line: &str) -> usize {
    let (mut single, mut double, mut prev) = (false, false, ' ');
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single && prev != '\\' => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return i,
            _ => {}
        }
        prev = c;
    }
    line.len()
}

fn expand_line(
    text: &str,
    line: usize,
    lookup: &impl Fn(&str) -> Option<String>,
    out: &mut String,
) -> Result<(), ConfigError> {
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        let (before, after) = rest.split_at(pos);
        out.push_str(before);
        if let Some(tail) = after.strip_prefix("$$") {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let Some(end) = tail.find('}') else {
                return Err(ConfigError::Env {
                    line,
                    reason: "unterminated `${`".into(),
                });
            };
            let name = &tail[..end];
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(ConfigError::Env {
                    line,
                    reason: format!("`${{{name}}}` is not a valid variable name"),
                });
            }
            let value = lookup(name).ok_or_else(|| ConfigError::Env {
                line,
                reason: format!("environment variable {name} is not set"),
            })?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "REGION" => Some("eu-west-1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_and_escapes() {
        assert_eq!(expand("a: ${REGION}", env).unwrap(), "a: eu-west-1");
        assert_eq!(expand("a: '${EMPTY}'", env).unwrap(), "a: ''");
        assert_eq!(expand("a: $$HOME $x", env).unwrap(), "a: $HOME $x");
        assert_eq!(expand("stage: $default", env).unwrap(), "stage: $default");
        assert_eq!(
            expand("a: 1 # ${NOPE}\n# ${NOPE}\n", env).unwrap(),
            "a: 1 # ${NOPE}\n# ${NOPE}\n"
        );
        assert_eq!(
            expand("a: 'x # ${REGION}'", env).unwrap(),
            "a: 'x # eu-west-1'"
        );
        assert_eq!(expand("a: x#${REGION}", env).unwrap(), "a: x#eu-west-1");
    }

    #[test]
    fn unset_variable_names_it_and_the_line() {
        let err = expand("a: 1\nb: ${NOPE}\n", env).unwrap_err().to_string();
        assert!(err.contains("NOPE") && err.contains("line 2"), "{err}");
        let err = expand("a: ${oops", env).unwrap_err().to_string();
        assert!(err.contains("unterminated"), "{err}");
        let err = expand("a: ${1X}", env).unwrap_err().to_string();
        assert!(err.contains("not a valid variable name"), "{err}");
    }
}
