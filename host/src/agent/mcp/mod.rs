//! `sealgate mcp`: an MCP server over stdio (the official Rust SDK, `rmcp`) that gives a
//! model sealgate's agent capabilities as tools, over the host's REST API with the
//! agent key in `SEALGATE_TOKEN`, exactly as `exec` and `credential-process` use it.
//!
//! The point is what the model does *not* see. A grant comes back as its id, status,
//! expiry and `secret_ref`; the credentials stay with the runtime, which resolves the
//! reference with `sealgate exec` or a `credential_process` profile. `aws_get_credentials`
//! hands secrets to the model only when the operator of the agent started the server
//! with `--allow-inline-credentials`; otherwise it answers how to use the grant instead.
//! An OIDC token is written to a 0600 file whose path the model gets (see [`tokens`]).
//!
//! Errors come in two kinds, as MCP defines them: a call the host refused, a denial, a
//! grant still waiting for an approver, or a failed BYO probe is a *tool error*
//! (`isError: true`) whose text says what to do next ([`outcome`]); arguments that do
//! not fit a tool's input schema are a JSON-RPC *invalid params* error, since no call
//! was made.
//!
//! Grants are also resources, `sealgate://grants/{id}`, which a client may read and
//! subscribe to: a subscription long-polls the grant and sends
//! `notifications/resources/updated` when it is decided, times out, or ends
//! ([`resources`]), so an agent that handed control back is told instead of polling.
//!
//! Stdout is the MCP channel: nothing else is written to it, and log lines go to
//! stderr (quiet unless `RUST_LOG` asks). Nothing here logs a secret.

mod outcome;
mod proof;
mod resources;
mod tokens;
mod tools;

use super::client::Sealgate;
use super::AgentError;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse,
    ServerCapabilities, ServerConfig, SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use std::borrow::Cow;
use std::sync::Arc;

/// How `sealgate mcp` was started.
pub struct McpOptions {
    /// The agent key's client (`SEALGATE_URL`, `SEALGATE_TOKEN`).
    pub api: Sealgate,
    /// The client the `byo_*` tools use: a workspace admin key (`SEALGATE_ADMIN_TOKEN`),
    /// since the host lets only admins manage BYO storage; the agent key's otherwise.
    pub admin: Sealgate,
    /// The agent's workspace (`SEALGATE_WORKSPACE`): the scope and BYO paths name it.
    pub workspace: Option<String>,
    /// `--allow-inline-credentials`: `aws_get_credentials` returns secrets, and
    /// `oidc_mint_token` the token itself.
    pub allow_inline_credentials: bool,
}

/// The server: the tools and the grant resources share the REST clients.
#[derive(Clone)]
pub struct Server {
    tools: Arc<tools::Tools>,
    grants: Arc<resources::Grants>,
}

const INSTRUCTIONS: &str = "sealgate brokers short-lived AWS access and OIDC tokens. Ask for AWS access with \
aws_request_access: the answer is a grant id and a secret_ref, never the credentials; run commands with them \
through `sealgate exec --secret-ref REF -- CMD` or a credential_process profile. A grant waiting for an approver \
is a resource (sealgate://grants/ and the grant's id): subscribe to it, or call aws_poll_grant, to learn when it is \
decided.";

impl Server {
    pub fn new(opts: McpOptions) -> Result<Self, AgentError> {
        let grants = Arc::new(resources::Grants::new(opts.api.clone()));
        let tools = Arc::new(tools::Tools::new(opts, grants.clone())?);
        Ok(Self { tools, grants })
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_resources_subscribe()
                .build(),
        )
        .with_server_info(Implementation::new("sealgate", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
    }

    /// Up to 2025-11-25: the session protocols, in which `resources/subscribe` is how a
    /// client asks to hear about a grant (2026-07-28 replaced it with
    /// `subscriptions/listen`, which this server does not implement yet).
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools::list()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        self.tools.call(&request.name, args).await.map(Into::into)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(self.grants.list()))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(resources::templates()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.grants.read(&request.uri).await.map(Into::into)
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.grants.subscribe(&request.uri, context.peer).await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.grants.unsubscribe(&request.uri);
        Ok(())
    }
}

/// Serves MCP on stdin/stdout until the client closes the connection.
pub async fn run(opts: McpOptions) -> Result<(), AgentError> {
    let server = Server::new(opts)?;
    let grants = server.grants.clone();
    let tools = server.tools.clone();
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| AgentError::Unreachable(format!("the MCP session did not start: {e}")))?;
    let ended = running.waiting().await;
    grants.stop_all();
    tools.forget_tokens();
    ended
        .map(|_| ())
        .map_err(|e| AgentError::Unreachable(format!("the MCP session failed: {e}")))
}
