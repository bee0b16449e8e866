//! statshttpd's API, read for each answer.

use std::time::Duration;

use serde_json::Value;

/// Answers must come within 2 s: statshttpd gets 1.5 s.
const TIMEOUT: Duration = Duration::from_millis(1500);

/// A client of statshttpd's API at one base URL.
#[derive(Clone, Debug)]
pub(crate) struct StatsApi {
    base: reqwest::Url,
    http: reqwest::Client,
}

impl StatsApi {
    pub(crate) fn new(base: &str) -> anyhow::Result<Self> {
        Ok(StatsApi {
            base: reqwest::Url::parse(base)?,
            http: reqwest::Client::builder().timeout(TIMEOUT).build()?,
        })
    }

    /// `GET path` answered 200 with JSON.
    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let (status, body) = self.fetch(path).await?;
        if status != 200 {
            let why = body["error"].as_str().unwrap_or("");
            anyhow::bail!("statshttpd answered {status} {why}");
        }
        Ok(body)
    }

    /// `GET path` answered 200, parsed as `T` (an answer of `sluice_api`).
    pub(crate) async fn typed<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> anyhow::Result<T> {
        parse(path, self.get(path).await?)
    }

    /// `GET path` whatever its status, parsed as `T`.
    pub(crate) async fn typed_any<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> anyhow::Result<T> {
        parse(path, self.get_any(path).await?)
    }

    /// `GET path` whatever its status (`/api/v1/health` says 503 with the
    /// details when something is down).
    pub(crate) async fn get_any(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self.fetch(path).await?.1)
    }

    async fn fetch(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let url = self.base.join(path)?;
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("statshttpd unreachable ({})", short(&e)))?;
        let status = response.status().as_u16();
        let body = response
            .json::<Value>()
            .await
            .map_err(|e| anyhow::anyhow!("statshttpd's answer is not JSON ({e})"))?;
        Ok((status, body))
    }
}

fn parse<T: serde::de::DeserializeOwned>(path: &str, body: Value) -> anyhow::Result<T> {
    serde_json::from_value(body).map_err(|e| {
        anyhow::anyhow!("statshttpd's answer to {path} is not what this bot reads ({e})")
    })
}

/// reqwest's error without the URL's query.
fn short(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "no answer within 1.5 s".into()
    } else if error.is_connect() {
        "connection refused".into()
    } else {
        error.to_string()
    }
}
