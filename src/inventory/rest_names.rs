//! The REST name join. CloudWatch keys REST API metrics by `ApiName`, not id: API Gateway
//! strips non-ASCII characters from the name (and uses the id when nothing is left), and two
//! APIs whose names end up equal share one series in CloudWatch.

use std::collections::BTreeMap;

use super::{NameConflict, RawApi};
use crate::model::ApiType;

/// The `ApiName` dimension value API Gateway publishes for a REST API.
pub fn cloudwatch_rest_name(name: &str, id: &str) -> String {
    let ascii: String = name.chars().filter(char::is_ascii).collect();
    if ascii.is_empty() {
        id.to_string()
    } else {
        ascii
    }
}

/// Groups of REST APIs that share a CloudWatch name, with the stage names they share.
/// Where discovery did not fetch stages (API-level selection), only the API-level series
/// (`None`) is shared.
pub(super) fn conflicts(raw: &[RawApi]) -> Vec<NameConflict> {
    let mut groups: BTreeMap<String, Vec<&RawApi>> = BTreeMap::new();
    for api in raw.iter().filter(|a| a.api_type == ApiType::Rest) {
        groups
            .entry(cloudwatch_rest_name(&api.name, &api.id))
            .or_default()
            .push(api);
    }
    groups
        .into_iter()
        .filter(|(_, apis)| apis.len() > 1)
        .map(|(name, apis)| {
            let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
            for api in &apis {
                for stage in api.stages.iter().flatten() {
                    *seen.entry(stage.name.as_str()).or_default() += 1;
                }
            }
            let mut stages = vec![None];
            stages.extend(
                seen.into_iter()
                    .filter(|(_, n)| *n > 1)
                    .map(|(s, _)| Some(s.to_string())),
            );
            let mut api_ids: Vec<String> = apis.iter().map(|a| a.id.clone()).collect();
            api_ids.sort();
            NameConflict {
                cloudwatch_name: name,
                api_ids,
                stages,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_non_ascii_and_falls_back_to_id() {
        assert_eq!(cloudwatch_rest_name("café-api", "x1"), "caf-api");
        assert_eq!(cloudwatch_rest_name("plain", "x1"), "plain");
        assert_eq!(cloudwatch_rest_name("日本語", "x1"), "x1");
        assert_eq!(cloudwatch_rest_name("", "x1"), "x1");
    }
}
