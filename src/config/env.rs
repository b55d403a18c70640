//! `${VAR}` expansion inside parsed YAML values.
//!
//! Expansion runs on the parsed document, string value by string value, so a variable's text
//! is never YAML: a quote, `#` or newline in it stays part of that one value and cannot break
//! the file or rewrite the keys around it. Keys and comments are never expanded. `$$` is a
//! literal `$`.

use yaml_serde::Value;

use super::ConfigError;

/// Expands `${NAME}` in every string value of `doc` from `lookup`. An unset variable is an
/// error that names it and the key it is used in: silently substituting an empty string would
/// turn a typo into a wrong endpoint or role.
pub fn expand(
    doc: &mut Value,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    walk(doc, &mut String::new(), lookup)
}

fn walk(
    value: &mut Value,
    path: &mut String,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        Value::String(s) => {
            if s.contains('$') {
                *s = expand_str(s, lookup).map_err(|reason| ConfigError::Invalid {
                    key: if path.is_empty() {
                        ".".into()
                    } else {
                        path.clone()
                    },
                    reason,
                })?;
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, path, lookup)?;
                path.truncate(len);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                match key {
                    Value::String(k) => path.push_str(k),
                    other => path.push_str(&format!("{other:?}")),
                }
                walk(item, path, lookup)?;
                path.truncate(len);
            }
        }
        Value::Tagged(tagged) => walk(&mut tagged.value, path, lookup)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// Expands one string; the error says which variable and why.
fn expand_str(text: &str, lookup: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        let (before, after) = rest.split_at(pos);
        out.push_str(before);
        if let Some(tail) = after.strip_prefix("$$") {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let Some(end) = tail.find('}') else {
                return Err("unterminated `${`".into());
            };
            let name = &tail[..end];
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!("`${{{name}}}` is not a valid variable name"));
            }
            let value =
                lookup(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "REGION" => Some("eu-west-1".into()),
            "EMPTY" => Some(String::new()),
            "NASTY" => Some("a\"b # c\nd: e\n- f".into()),
            _ => None,
        }
    }

    fn expanded(yaml: &str) -> Result<Value, ConfigError> {
        let mut doc: Value = yaml_serde::from_str(yaml).unwrap();
        expand(&mut doc, &env)?;
        Ok(doc)
    }

    #[test]
    fn expands_values_and_escapes() {
        let doc = expanded("a: ${REGION}\nb: '${EMPTY}'\nc: $$HOME $x\nd: $default\n").unwrap();
        assert_eq!(doc["a"], Value::from("eu-west-1"));
        assert_eq!(doc["b"], Value::from(""));
        assert_eq!(doc["c"], Value::from("$HOME $x"));
        assert_eq!(doc["d"], Value::from("$default"));
        // Comments are not values: an unset variable there is not an error.
        let doc = expanded("a: 1 # ${NOPE}\n# ${NOPE}\nb: [x, '${REGION}']\n").unwrap();
        assert_eq!(doc["b"][1], Value::from("eu-west-1"));
    }

    #[test]
    fn a_variable_is_never_yaml() {
        let doc = expanded("a: ${NASTY}\nb: \"${NASTY}\"\nc: keep\n").unwrap();
        let nasty = Value::from("a\"b # c\nd: e\n- f");
        assert_eq!(doc["a"], nasty);
        assert_eq!(doc["b"], nasty);
        assert_eq!(doc["c"], Value::from("keep"));
        assert!(doc.get("d").is_none(), "a newline in a value added a key");
    }

    #[test]
    fn unset_variable_names_it_and_the_key() {
        let err = expanded("a: 1\nb:\n  c: [x, '${NOPE}']\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("NOPE") && err.contains("b.c[1]"), "{err}");
        let err = expanded("a: ${oops").unwrap_err().to_string();
        assert!(err.contains("unterminated"), "{err}");
        let err = expanded("a: ${1X}").unwrap_err().to_string();
        assert!(err.contains("not a valid variable name"), "{err}");
    }
}
