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
    /// Present when this target is a CloudWatch monitoring account: it also reads the source
    /// accounts linked to it (cross-account observability).
    #[serde(default)]
    pub source_accounts: Option<SourceAccounts>,
}

/// The source accounts a monitoring account reads: listed, and, with `linked`, every account
/// linked to its OAM sink in the region. Metrics come through the monitoring account
/// (GetMetricData with `AccountId`); each account's APIs are discovered with a read-only role
/// in it, or, without one, from the monitoring account's ListMetrics alone.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of source account settings"
)]
pub struct SourceAccounts {
    /// Every account attached to the monitoring account's sinks (OAM ListAttachedLinks),
    /// refreshed with discovery.
    #[serde(default)]
    pub linked: bool,
    /// The role discovery assumes in an account found through a link, by name.
    #[serde(default)]
    pub role_name: Option<RoleName>,
    /// The external id of `role_name`'s roles.
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub accounts: Vec<SourceAccount>,
    /// Whether the monitoring account's own APIs are read too.
    #[serde(default = "default_true")]
    pub include_monitoring_account: bool,
}

fn default_true() -> bool {
    true
}

/// One listed source account: discovered with `role_arn` (a read-only role in it), or without
/// a role from ListMetrics.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with account_id and optionally role_arn"
)]
pub struct SourceAccount {
    pub account_id: AccountId,
    #[serde(default)]
    pub role_arn: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
}

/// A 12-digit AWS account id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(String);

impl AccountId {
    pub fn new(text: &str) -> Result<AccountId, String> {
        if text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()) {
            Ok(AccountId(text.to_string()))
        } else {
            Err(format!(
                "{text:?} is not an AWS account id (12 digits, quoted in YAML: \"123456789012\")"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AccountId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AccountId, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AccountId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a 12-digit AWS account id")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AccountId, E> {
                AccountId::new(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<AccountId, E> {
                // An unquoted id is a number to YAML; with fewer than 12 digits it may have lost
                // leading zeros: refuse rather than guess.
                if (100_000_000_000..1_000_000_000_000).contains(&v) {
                    return Ok(AccountId(v.to_string()));
                }
                Err(E::custom(format!(
                    "{v} is not an AWS account id; if it is one whose leading zeros YAML dropped, quote it (\"{v:012}\")"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// An IAM role name (with an optional path), as in `arn:aws:iam::<account>:role/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleName(String);

impl RoleName {
    pub fn new(text: &str) -> Result<RoleName, String> {
        let ok = !text.is_empty()
            && text.len() <= 512
            && !text.starts_with('/')
            && !text.ends_with('/')
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b));
        if ok {
            Ok(RoleName(text.to_string()))
        } else {
            Err(format!(
                "{text:?} is not an IAM role name (letters, digits and +=,.@_-, optionally after a path like team/)"
            ))
        }
    }

    /// The role's ARN in `account`, in the partition of `region`.
    pub fn arn(&self, account: &str, region: &str) -> String {
        format!("arn:{}:iam::{account}:role/{}", partition(region), self.0)
    }
}

impl<'de> Deserialize<'de> for RoleName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RoleName, D::Error> {
        let text = String::deserialize(d)?;
        RoleName::new(&text).map_err(de::Error::custom)
    }
}

/// The AWS partition of a region.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// The account of an IAM role ARN.
pub fn role_account(arn: &str) -> Option<&str> {
    arn.split(':').nth(4)
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
    if let Some(sources) = &t.source_accounts {
        validate_sources(&format!("{key}.source_accounts"), sources)?;
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

fn validate_sources(key: &str, s: &SourceAccounts) -> Result<(), ConfigError> {
    if !s.linked && s.accounts.is_empty() {
        return Err(invalid(
            key,
            "names no source account: list them under accounts, or set linked: true to read every account linked to the monitoring account",
        ));
    }
    if !s.linked && s.role_name.is_some() {
        return Err(invalid(
            format!("{key}.role_name"),
            "applies to the accounts found through links: set linked: true, or give each listed account its role_arn",
        ));
    }
    if s.role_name.is_none() && s.external_id.is_some() {
        return Err(invalid(
            format!("{key}.external_id"),
            "only applies together with role_name",
        ));
    }
    for (i, a) in s.accounts.iter().enumerate() {
        let at = format!("{key}.accounts[{i}]");
        if s.accounts[..i].iter().any(|b| b.account_id == a.account_id) {
            return Err(invalid(
                format!("{at}.account_id"),
                format!("{} is listed twice", a.account_id),
            ));
        }
        match &a.role_arn {
            Some(arn) if !is_role_arn(arn) => {
                return Err(invalid(
                    format!("{at}.role_arn"),
                    format!("{arn:?} is not an IAM role ARN (arn:aws:iam::123456789012:role/name)"),
                ));
            }
            Some(arn) if role_account(arn) != Some(a.account_id.as_str()) => {
                return Err(invalid(
                    format!("{at}.role_arn"),
                    format!(
                        "{arn:?} is a role in another account: discovery reads the APIs of the role's own account, so it must be a role in {}",
                        a.account_id
                    ),
                ));
            }
            Some(_) => {}
            None if a.external_id.is_some() => {
                return Err(invalid(
                    format!("{at}.external_id"),
                    "only applies together with role_arn",
                ));
            }
            None => {}
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
