//! NATS ingress: the service `crm-commands`, one endpoint per command on
//! `<prefix>.cmd.<name>`, discoverable through the NATS service API. Requests are
//! handled concurrently; instances share the queue group.

use async_nats::service::ServiceExt;
use async_nats::HeaderMap;
use bytes::Bytes;
use crm_bus::Subjects;
use crm_contracts::wire::{encode_reply, Format, COMMAND_NAMES};
use futures::StreamExt;

use crate::execute::{execute, refusal, reply, Handler};
use crate::problem::Problem;

/// Start the service; it runs until the client is dropped.
pub async fn serve(
    client: async_nats::Client,
    subjects: Subjects,
    handler: Handler,
) -> Result<async_nats::service::Service, async_nats::Error> {
    let service = client
        .service_builder()
        .description("CRM commands: one endpoint per command, protobuf or JSON (Content-Type: application/json)")
        .start(subjects.service_name(), env!("CARGO_PKG_VERSION"))
        .await?;
    let group = service.group(format!("{}.cmd", subjects.prefix()));
    for name in COMMAND_NAMES {
        let mut endpoint = group.endpoint(*name).await?;
        let handler = handler.clone();
        tokio::spawn(async move {
            while let Some(request) = endpoint.next().await {
                let handler = handler.clone();
                tokio::spawn(async move {
                    let ct = request
                        .message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Content-Type"))
                        .map(|v| v.as_str().to_string());
                    let (format, result) = match Format::from_content_type(ct.as_deref()) {
                        Some(f) => (
                            f,
                            execute(
                                &handler,
                                "nats",
                                name,
                                &request.message.payload,
                                f,
                                None,
                                None,
                            )
                            .await,
                        ),
                        None => (
                            Format::Json,
                            Err(Problem::unsupported_media_type(ct.as_deref().unwrap_or(""))),
                        ),
                    };
                    let mut headers = HeaderMap::new();
                    headers.insert("Content-Type", format.content_type());
                    let body = match &result {
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
