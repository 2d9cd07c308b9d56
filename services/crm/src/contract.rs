//! `crm contract`: the contract's machine-readable documents, as other teams generate
//! code from them (`docs/contract/` holds this command's output, checked by a test).

#[derive(Debug, clap::Subcommand)]
pub enum ContractCmd {
    /// Print the AsyncAPI 3 document of the events (`docs/contract/asyncapi.json`),
    /// generated from `proto/crm/v1/events.proto`.
    Asyncapi,
    /// Print the OpenAPI 3.1 document of the HTTP command API (`docs/contract/commands.openapi.json`),
    /// generated from `proto/crm/v1/commands.proto`.
    Openapi,
    /// Print the OpenAPI 3.1 document of the query API (`docs/contract/query.openapi.json`),
    /// generated from the query service's handlers and the types they answer.
    QueryOpenapi,
}

pub fn run(cmd: ContractCmd) -> anyhow::Result<()> {
    let text = match cmd {
        ContractCmd::Asyncapi => crm_contracts::asyncapi::document(),
        ContractCmd::Openapi => crm_contracts::openapi::document().to_string(),
        ContractCmd::QueryOpenapi => crm_query::openapi::document_json(),
    };
    println!("{text}");
    Ok(())
}
