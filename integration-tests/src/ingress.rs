//! Talking to a running command service the way clients do, over either ingress, and
//! reading its answer the same way from both: HTTP status and problem code, or the NATS
//! reply's `Crm-Error-Status` / `Crm-Error-Code` headers (200 when accepted).

use std::time::Duration;

use serde_json::Value;

/// Which ingress a request goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Http,
    Nats,
}

/// What came back. `status` 0 means no answer (a timeout, no responder, a reset).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub code: String,
    pub detail: String,
    pub body: Value,
}

impl Answer {
    fn none(why: impl std::fmt::Display) -> Self {
        Self {
            status: 0,
            code: "none".into(),
            detail: why.to_string(),
            body: Value::Null,
        }
    }
}

/// Both ingresses of one command service.
#[derive(Clone)]
pub struct Ingress {
    pub http: reqwest::Client,
    pub base: String,
    pub nats: async_nats::Client,
    pub prefix: String,
    pub timeout: Duration,
}

/// One request: the command's name, its body and how it is labelled.
pub struct Request<'a> {
    pub command: &'a str,
    pub body: Vec<u8>,
    /// `Content-Type`; `None` sends none (NATS then reads protobuf, HTTP JSON).
    pub content_type: Option<&'a str>,
    pub token: Option<&'a str>,
}

impl Ingress {
    pub async fn new(base: String, nats_url: &str, prefix: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base,
            nats: crm_bus::connect::connect(nats_url, &Default::default())
                .await
                .expect("NATS"),
            prefix: prefix.to_string(),
            timeout: Duration::from_secs(10),
        }
    }

    pub async fn send(&self, via: Via, r: &Request<'_>) -> Answer {
        match via {
            Via::Http => self.over_http(r).await,
            Via::Nats => self.over_nats(r).await,
        }
    }

    /// A JSON command over `via`, with a bearer token if given.
    pub async fn json(&self, via: Via, command: &str, body: &Value, token: Option<&str>) -> Answer {
        self.send(
            via,
            &Request {
                command,
                body: serde_json::to_vec(body).expect("JSON"),
                content_type: Some("application/json"),
                token,
            },
        )
        .await
    }

    async fn over_http(&self, r: &Request<'_>) -> Answer {
        let mut request = self
            .http
            .post(format!("{}/v1/commands/{}", self.base, r.command))
            .timeout(self.timeout)
            .body(r.body.clone());
        if let Some(ct) = r.content_type {
            request = request.header("content-type", ct);
        }
        if let Some(t) = r.token {
            request = request.bearer_auth(t);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Answer::none(e),
        };
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            code: body["code"].as_str().unwrap_or("").to_string(),
            detail: body["detail"].as_str().unwrap_or("").to_string(),
            body,
        }
    }

    async fn over_nats(&self, r: &Request<'_>) -> Answer {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(ct) = r.content_type {
            headers.insert("Content-Type", ct);
        }
        if let Some(t) = r.token {
            headers.insert("Authorization", format!("Bearer {t}").as_str());
        }
        let request = async_nats::Request::new()
            .payload(r.body.clone().into())
            .headers(headers)
            .timeout(Some(self.timeout));
        let subject = format!("{}.cmd.{}", self.prefix, r.command);
        let message = match self.nats.send_request(subject, request).await {
            Ok(m) => m,
            Err(e) => return Answer::none(e),
        };
        let header = |k: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(k))
                .map(|v| v.as_str().to_string())
        };
        let json = header("Content-Type").as_deref() == Some("application/json");
        let body: Value = if json {
            serde_json::from_slice(&message.payload).unwrap_or(Value::Null)
        } else {
            crm_contracts::wire::decode_reply(
                &message.payload,
                crm_contracts::wire::Format::Protobuf,
            )
            .ok()
            .and_then(|reply| serde_json::to_value(reply).ok())
            .unwrap_or(Value::Null)
        };
        let status = header("Crm-Error-Status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(200);
        Answer {
            status,
            code: header("Crm-Error-Code").unwrap_or_default(),
            detail: body["problem"]["detail"].as_str().unwrap_or("").to_string(),
            body,
        }
    }
}

/// A bearer token signed with `secret` (HS256), as `crm token` issues them.
pub fn token(secret: &str, issuer: &str, audience: &str, sub: &str, extra: Value) -> String {
    let mut claims = serde_json::json!({
        "iss": issuer, "aud": audience, "sub": sub,
        "exp": chrono::Utc::now().timestamp() + 3600,
    });
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            claims[k] = v;
        }
    }
    crm_auth::sign_hs256(secret.as_bytes(), &claims)
}
