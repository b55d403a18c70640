//! `targets`: the accounts and regions polled, and which of their APIs and stages count.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::types::Pattern;
use super::{ConfigError, invalid};
use crate::model::ApiType;

/// One account, polled in every region listed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub regions: Vec<String>,
    #[serde(default)]
    pub role_arn: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub apis: ApiSelection,
}

/// Which APIs and stages of a target are exported.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSelection {
    pub types: Vec<ApiType>,
    pub include: Vec<Pattern>,
    pub exclude: Vec<Pattern>,
    pub tags: BTreeMap<String, String>,
    pub stages: StageSelection,
    pub detailed_metrics: DetailedMetrics,
}

impl Default for ApiSelection {
    fn default() -> Self {
        ApiSelection {
            types: ApiType::ALL.to_vec(),
            include: Vec::new(),
            exclude: Vec::new(),
            tags: BTreeMap::new(),
            stages: StageSelection::All,
            detailed_metrics: DetailedMetrics::Auto,
        }
    }
}

/// `all`, a list of stage names, or `[]` for API-level metrics only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StageSelection {
    #[default]
    All,
    Only(Vec<String>),
}

impl StageSelection {
    pub fn selects(&self, stage: &str) -> bool {
        match self {
            StageSelection::All => true,
            StageSelection::Only(names) => names.iter().any(|n| n == stage),
        }
    }
}

impl<'de> Deserialize<'de> for StageSelection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StageSelection;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`all` or a list of stage names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StageSelection, E> {
                match v {
                    "all" => Ok(StageSelection::All),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StageSelection, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(StageSelection::Only(names))
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether route-level (detailed) metrics are read. Route-level families arrive with the
/// per-route issue; the key is accepted and validated now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetailedMetrics {
    #[default]
    Auto,
    On,
    Off,
}

pub(super) fn validate_target(key: &str, t: &TargetConfig) -> Result<(), ConfigError> {
    if t.regions.is_empty() {
        return Err(invalid(
            format!("{key}.regions"),
            "must list at least one region, e.g. [us-east-1]",
        ));
    }
    for (i, region) in t.regions.iter().enumerate() {
        if !is_region(region) {
            return Err(invalid(
                format!("{key}.regions[{i}]"),
                format!("{region:?} is not an AWS region name (like us-east-1 or eu-west-2)"),
            ));
        }
        if t.regions[..i].contains(region) {
            return Err(invalid(
                format!("{key}.regions[{i}]"),
                format!("{region:?} is listed twice"),
            ));
        }
    }
    if let Some(arn) = &t.role_arn {
        if !is_role_arn(arn) {
            return Err(invalid(
                format!("{key}.role_arn"),
                format!("{arn:?} is not an IAM role ARN (arn:aws:iam::123456789012:role/name)"),
            ));
        }
    } else if t.external_id.is_some() {
        return Err(invalid(
            format!("{key}.external_id"),
            "only applies together with role_arn",
        ));
    }
    let apis = &t.apis;
    if apis.types.is_empty() {
        return Err(invalid(
            format!("{key}.apis.types"),
            "must list at least one of rest, http, websocket",
        ));
    }
    for (i, ty) in apis.types.iter().enumerate() {
        if apis.types[..i].contains(ty) {
            return Err(invalid(
                format!("{key}.apis.types[{i}]"),
                format!("{ty} is listed twice"),
            ));
        }
    }
    if let StageSelection::Only(names) = &apis.stages {
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() {
                return Err(invalid(
                    format!("{key}.apis.stages[{i}]"),
                    "must not be empty",
                ));
            }
        }
    }
    Ok(())
}

pub(super) fn is_region(s: &str) -> bool {
    // partition-prefix (us, eu, ap, us-gov, cn, ...), a direction word, then a number.
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1]
            .parse::<u8>()
            .is_ok_and(|n| n > 0 && !parts[parts.len() - 1].starts_with('0'))
}

pub(super) fn is_role_arn(s: &str) -> bool {
    let mut parts = s.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    partition.starts_with("aws")
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && resource
            .strip_prefix("role/")
            .is_some_and(|r| !r.is_empty())
}
