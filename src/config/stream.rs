//! `stream`: CloudWatch Metric Streams delivered through a Firehose HTTP endpoint.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Deserializer};

use super::types;

/// The Firehose delivery stream's access key, sent in every request's
/// `X-Amz-Firehose-Access-Key`. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey(String);

impl AccessKey {
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessKey(<redacted>)")
    }
}

/// Firehose accepts access keys of up to 4,096 characters.
const MAX_ACCESS_KEY: usize = 4096;

impl<'de> Deserialize<'de> for AccessKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AccessKey, D::Error> {
        let key = String::deserialize(d)?;
        if key.trim().is_empty() {
            return Err(serde::de::Error::custom(
                "must not be empty (an unset ${VAR} expands to nothing)",
            ));
        }
        if key.len() > MAX_ACCESS_KEY {
            return Err(serde::de::Error::custom(format!(
                "is {} bytes long; Firehose access keys have at most {MAX_ACCESS_KEY}",
                key.len()
            )));
        }
        Ok(AccessKey(key))
    }
}

/// The metric stream endpoint. Off unless `enabled`; then `access_key` is required.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    #[serde(deserialize_with = "types::number_or_text")]
    pub enabled: bool,
    /// Where Firehose delivers (behind an HTTPS ingress: Firehose sends to HTTPS only).
    pub listen_address: SocketAddr,
    pub access_key: Option<AccessKey>,
    /// The stream also carries the latency percentiles (its statistics configuration adds
    /// them); else they are still read with GetMetricData.
    #[serde(deserialize_with = "types::number_or_text")]
    pub percentiles: bool,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            enabled: false,
            listen_address: SocketAddr::from(([0, 0, 0, 0], 9744)),
            access_key: None,
            percentiles: false,
        }
    }
}
