//! NATS ingress: the service `crm-commands`, one endpoint per command on
//! `<prefix>.cmd.<name>`, discoverable through the NATS service API. Requests are
//! handled concurrently; instances share the queue group. A request carries the same
//! bearer token as an HTTP call, in its `Authorization` header: the recorded actor is
//! the token's, whatever the payload says (`caller.rs`).

use async_nats::service::ServiceExt;
use async_nats::HeaderMap;
use bytes::Bytes;
use crm_bus::Subjects;
use crm_contracts::wire::{encode_reply, Format, COMMAND_NAMES};
use futures::StreamExt;

use crate::caller::authenticate;
use crate::execute::{execute, refusal, reply, Handler};
use crate::problem::Problem;

/// Start the service; it runs until the client is dropped.
pub async fn serve(
    client: async_nats::Client,
    subjects: Subjects,
    handler: Handler,
    auth: Option<crm_auth::Verifier>,
) -> Result<async_nats::service::Service, async_nats::Error> {
    let service = client
        .service_builder()
        .description("CRM commands: one endpoint per command, protobuf or JSON (Content-Type: application/json)")
        .start(subjects.service_name(), env!("CARGO_PKG_VERSION"))
        .await?;
    let group = service.group(format!("{}.cmd", subjects.prefix()));
    for name in COMMAND_NAMES {
        let mut endpoint = group.endpoint(*name).await?;
        let (handler, auth) = (handler.clone(), auth.clone());
        tokio::spawn(async move {
            while let Some(request) = endpoint.next().await {
                let (handler, auth) = (handler.clone(), auth.clone());
                tokio::spawn(async move {
                    let (format, result) =
                        answer(&handler, auth.as_ref(), name, &request.message).await;
                    let (headers, body) = reply_message(format, &result);
                    if let Err(e) = request
                        .respond_with_headers(Ok(Bytes::from(body)), headers)
                        .await
                    {
                        tracing::warn!(error = %e, command = name, "could not send the reply");
                    }
                });
            }
        });
    }
    Ok(service)
}

/// One request's answer, in the format to reply in.
async fn answer(
    handler: &Handler,
    auth: Option<&crm_auth::Verifier>,
    name: &str,
    message: &async_nats::Message,
) -> (Format, Result<crm_command_handler::Accepted, Problem>) {
    let header = |key: &str| {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(key))
            .map(|v| v.as_str().to_string())
    };
    let ct = header("Content-Type");
    let Some(format) = Format::from_content_type(ct.as_deref()) else {
        let problem = Problem::unsupported_media_type(ct.as_deref().unwrap_or(""));
        return (Format::Json, Err(problem));
    };
    let principal = match authenticate(auth, header("Authorization").as_deref(), name) {
        Ok(p) => p,
        Err(problem) => return (format, Err(problem)),
    };
    let result = execute(
        handler,
        "nats",
        name,
        &message.payload,
        format,
        None,
        principal.as_ref(),
    )
    .await;
    (format, result)
}

/// The reply's headers and body; a refusal carries its code and status in headers too.
fn reply_message(
    format: Format,
    result: &Result<crm_command_handler::Accepted, Problem>,
) -> (HeaderMap, Vec<u8>) {
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", format.content_type());
    let body = match result {
        Ok(accepted) => encode_reply(&reply(accepted), format),
        Err(problem) => {
            headers.insert("Crm-Error-Code", problem.code.as_str());
            headers.insert("Crm-Error-Status", problem.status.to_string().as_str());
            headers.insert("Nats-Service-Error", problem.title().as_str());
            headers.insert(
                "Nats-Service-Error-Code",
                problem.status.to_string().as_str(),
            );
            encode_reply(&refusal(problem), format)
        }
    };
    (headers, body)
}
