//! The Prometheus HTTP API source: one instant query per metric per cycle, for all nodes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;
use tracing::{debug, warn};

use super::plan::{MetricResult, Series, SkipReason};

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

#[derive(Clone)]
pub struct PrometheusClient {
    http: Client<Https, Empty<Bytes>>,
    base: String,
    /// The token file, re-read for every query (a projected ServiceAccount token or a Secret
    /// rotates under the running collector), and the last token read from it.
    bearer_file: Option<std::path::PathBuf>,
    bearer: Arc<std::sync::Mutex<Option<String>>>,
    pub timeout: Duration,
    pub attempts: u32,
}

/// One failed attempt, and whether trying again could help.
#[derive(Debug)]
struct Attempt {
    reason: SkipReason,
    message: String,
    retry: bool,
}

#[derive(Deserialize)]
struct ApiResponse<'a> {
    status: String,
    #[serde(default, borrow)]
    data: Option<ApiData<'a>>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ApiData<'a> {
    #[serde(rename = "resultType")]
    result_type: String,
    /// Kept as the answer's bytes and read series by series: a parsed tree of 200,000 series
    /// with all their labels took 9× the answer's size.
    #[serde(borrow)]
    result: &'a serde_json::value::RawValue,
}

/// Reads a vector's samples straight into [`Series`], keeping of each series' labels only the
/// identity label's value.
struct VectorSeed<'l> {
    identity_label: &'l str,
}

impl<'de> serde::de::DeserializeSeed<'de> for VectorSeed<'_> {
    type Value = Vec<Series>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct Samples<'l>(&'l str);
        impl<'de> serde::de::Visitor<'de> for Samples<'_> {
            type Value = Vec<Series>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of samples")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(sample) = seq.next_element_seed(SampleSeed(self.0))? {
                    match sample {
                        Some(series) => out.push(series),
                        None => debug!(label = self.0, "series without the identity label skipped"),
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_seq(Samples(self.identity_label))
    }
}

/// One sample: `{"metric": {...}, "value": [time, "value"]}`.
struct SampleSeed<'l>(&'l str);

impl<'de> serde::de::DeserializeSeed<'de> for SampleSeed<'_> {
    type Value = Option<Series>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct Sample<'l>(&'l str);
        impl<'de> serde::de::Visitor<'de> for Sample<'_> {
            type Value = Option<Series>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sample with metric and value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut identity: Option<String> = None;
                let mut value: Option<(f64, std::borrow::Cow<'de, str>)> = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "metric" => identity = map.next_value_seed(LabelSeed(self.0))?,
                        "value" => value = Some(map.next_value()?),
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                let (at, text) = value.ok_or_else(|| serde::de::Error::missing_field("value"))?;
                Ok(identity.map(|identity| {
                    let value = parse_sample_value(&text).ok_or(SkipReason::Unparsable);
                    let sampled_at = sample_time(at).ok_or(SkipReason::BadTimestamp);
                    Series {
                        identity,
                        sample: value.and_then(|v| sampled_at.map(|t| (v, t))),
                    }
                }))
            }
        }
        d.deserialize_map(Sample(self.0))
    }
}

/// A series' labels, of which only the named one is kept.
struct LabelSeed<'l>(&'l str);

impl<'de> serde::de::DeserializeSeed<'de> for LabelSeed<'_> {
    type Value = Option<String>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct Labels<'l>(&'l str);
        impl<'de> serde::de::Visitor<'de> for Labels<'_> {
            type Value = Option<String>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of labels")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut found = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == self.0 {
                        found = Some(map.next_value::<String>()?);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(found)
            }
        }
        d.deserialize_map(Labels(self.0))
    }
}

/// Parses a Prometheus sample value: numbers, `NaN`, `+Inf`, `-Inf`.
pub fn parse_sample_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

/// A Prometheus sample time (seconds since the epoch, fractional) as a timestamp, if it is one.
pub fn sample_time(seconds: f64) -> Option<Timestamp> {
    if !seconds.is_finite() {
        return None;
    }
    let millis = (seconds * 1000.0).round();
    // within i64 and within jiff's range (years -9999..=9999)
    if millis.abs() > 2.0e17 {
        return None;
    }
    Timestamp::from_millisecond(millis as i64).ok()
}

/// Turns a `/api/v1/query` answer into series keyed by the identity label.
pub fn parse_query_response(
    body: &[u8],
    identity_label: &str,
) -> Result<Vec<Series>, (SkipReason, String)> {
    let response: ApiResponse = serde_json::from_slice(body)
        .map_err(|e| (SkipReason::QueryFailed, format!("unparsable answer: {e}")))?;
    if response.status != "success" {
        return Err((
            SkipReason::QueryError,
            format!(
                "{}: {}",
                response.error_type.unwrap_or_else(|| "error".into()),
                response.error.unwrap_or_default()
            ),
        ));
    }
    let data = response
        .data
        .ok_or((SkipReason::QueryFailed, "answer has no data".to_string()))?;
    if data.result_type != "vector" {
        return Err((
            SkipReason::QueryError,
            format!(
                "query returned a {}, not a vector with one sample per node",
                data.result_type
            ),
        ));
    }
    use serde::de::DeserializeSeed;
    let mut reader = serde_json::Deserializer::from_str(data.result.get());
    VectorSeed { identity_label }
        .deserialize(&mut reader)
        .and_then(|series| reader.end().map(|()| series))
        .map_err(|e| (SkipReason::QueryFailed, format!("unparsable vector: {e}")))
}

impl PrometheusClient {
    pub fn new(
        base: &str,
        bearer_token_file: Option<&Path>,
        ca_file: Option<&Path>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        match ca_file {
            Some(ca) => {
                for cert in CertificateDer::pem_file_iter(ca)
                    .with_context(|| format!("reading {}", ca.display()))?
                {
                    roots.add(cert.with_context(|| format!("parsing {}", ca.display()))?)?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                for cert in native.certs {
                    let _ = roots.add(cert);
                }
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let bearer = match bearer_token_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("reading the bearer token {}", p.display()))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        Ok(PrometheusClient {
            http: Client::builder(TokioExecutor::new()).build(connector),
            base: base.trim_end_matches('/').to_string(),
            bearer_file: bearer_token_file.map(Path::to_path_buf),
            bearer: Arc::new(std::sync::Mutex::new(bearer)),
            timeout,
            attempts: 3,
        })
    }

    /// The bearer token as the file holds it now; the last one read if the file is unreadable
    /// for a moment (a rotation replaces it).
    fn token(&self) -> Option<String> {
        let mut last = self.bearer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(path) = &self.bearer_file {
            match std::fs::read_to_string(path) {
                Ok(text) => *last = Some(text.trim().to_string()),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "bearer token unreadable; using the last one read")
                }
            }
        }
        last.clone()
    }

    async fn attempt(&self, url: &str, identity_label: &str) -> Result<Vec<Series>, Attempt> {
        let mut request = hyper::Request::get(url);
        if let Some(token) = self.token() {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Empty::new()).map_err(|e| Attempt {
            reason: SkipReason::QueryFailed,
            message: format!("bad request URL: {e}"),
            retry: false,
        })?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| Attempt {
                reason: SkipReason::QueryFailed,
                message: format!("connection: {e}"),
                retry: true,
            })?;
            let status = response.status();
            let body = response.into_body().collect().await.map_err(|e| Attempt {
                reason: SkipReason::QueryFailed,
                message: format!("reading the answer: {e}"),
                retry: true,
            })?;
            Ok::<_, Attempt>((status, body.to_bytes()))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| Attempt {
                reason: SkipReason::QueryFailed,
                message: format!("timed out after {:?}", self.timeout),
                retry: true,
            })??;
        match parse_query_response(&body, identity_label) {
            Ok(series) => Ok(series),
            Err((reason, message)) => Err(Attempt {
                reason,
                message: format!("HTTP {}: {message}", status.as_u16()),
                // bad_data (400/422) will not get better; 5xx and garbage might
                retry: status.is_server_error()
                    || (reason == SkipReason::QueryFailed && !status.is_client_error()),
            }),
        }
    }

    /// Runs one instant query at `time`, with retries and backoff for transient failures.
    pub async fn query(&self, promql: &str, time: Timestamp, identity_label: &str) -> MetricResult {
        let params = [
            ("query", promql.to_string()),
            (
                "time",
                format!("{:.3}", time.as_millisecond() as f64 / 1000.0),
            ),
        ];
        let query = serde_urlencoded::to_string(params).unwrap_or_default();
        let url = format!("{}/api/v1/query?{}", self.base, query);
        let mut backoff = Duration::from_millis(250);
        let mut last = None;
        for attempt in 1..=self.attempts.max(1) {
            match self.attempt(&url, identity_label).await {
                Ok(series) => return MetricResult::Series(series),
                Err(a) => {
                    warn!(attempt, query = promql, error = %a.message, "Prometheus query failed");
                    let retry = a.retry;
                    last = Some(a.reason);
                    if !retry || attempt == self.attempts {
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
        MetricResult::Failed(last.unwrap_or(SkipReason::QueryFailed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_token_is_read_for_every_query_and_survives_a_missing_file() {
        let dir = std::env::temp_dir().join(format!("realload-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "first\n").unwrap();
        let client = PrometheusClient::new(
            "http://127.0.0.1:9",
            Some(&file),
            None,
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(client.token().as_deref(), Some("first"));
        std::fs::write(&file, "rotated").unwrap();
        assert_eq!(
            client.token().as_deref(),
            Some("rotated"),
            "a rotation is used at once"
        );
        std::fs::remove_file(&file).unwrap();
        assert_eq!(
            client.token().as_deref(),
            Some("rotated"),
            "the last token stays"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parses_vectors_special_values_and_errors() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"instance":"10.0.0.1:9100"},"value":[1763773500.5,"0.42"]},
            {"metric":{"instance":"10.0.0.2:9100"},"value":[1763773500,"NaN"]},
            {"metric":{"instance":"10.0.0.3:9100"},"value":[1763773500,"+Inf"]},
            {"metric":{"job":"x"},"value":[1763773500,"0.1"]}]}}"#;
        let s = parse_query_response(body, "instance").unwrap();
        assert_eq!(
            s.len(),
            3,
            "the series without the identity label is dropped"
        );
        let (v0, t0) = s[0].sample.unwrap();
        assert_eq!(v0, 0.42);
        assert_eq!(t0, Timestamp::from_millisecond(1_763_773_500_500).unwrap());
        assert!(s[1].sample.unwrap().0.is_nan());
        assert!(s[2].sample.unwrap().0.is_infinite());
        // an unparsable value and an impossible time are named, not dropped as "absent"
        let odd = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"instance":"a"},"value":[1763773500,"zero"]},
            {"metric":{"instance":"b"},"value":[1e20,"0.5"]}]}}"#;
        let s = parse_query_response(odd, "instance").unwrap();
        assert_eq!(s[0].sample, Err(SkipReason::Unparsable));
        assert_eq!(s[1].sample, Err(SkipReason::BadTimestamp));
        assert_eq!(sample_time(0.0), Some(Timestamp::UNIX_EPOCH));
        assert_eq!(sample_time(f64::NAN), None);
        let e = parse_query_response(
            br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
            "instance",
        )
        .unwrap_err();
        assert_eq!(e.0, SkipReason::QueryError);
        assert!(e.1.contains("bad_data: parse error"));
        let e = parse_query_response(
            br#"{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}"#,
            "instance",
        )
        .unwrap_err();
        assert_eq!(e.0, SkipReason::QueryError);
        assert_eq!(
            parse_query_response(b"<html>", "instance").unwrap_err().0,
            SkipReason::QueryFailed
        );
    }
}
