//! The OpenAPI 3 document: every route, its parameters, bodies and every
//! response it can give, including the errors every protected route shares.

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{groups, logs, members, operations, service};
use crate::model;

/// The name of the bearer security scheme.
const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hubsync",
        description = "Manage hubsync's sync groups and members. Resource names, property names and enum values \
            follow Azure SQL Data Sync's wherever the concept is the same. Every route but `/healthz` needs \
            `Authorization: Bearer <token>`; a read-only token may only GET. Errors are \
            `{\"error\": {\"code\": \"...\", \"message\": \"...\"}}` with a stable code."
    ),
    paths(
        groups::list_groups,
        groups::get_group,
        groups::put_group,
        groups::patch_group,
        groups::delete_group,
        groups::refresh_hub_schema,
        groups::hub_schemas,
        groups::trigger_sync,
        groups::cancel_sync,
        logs::logs,
        logs::conflicts,
        members::list_members,
        members::get_member,
        members::put_member,
        members::patch_member,
        members::delete_member,
        members::refresh_member_schema,
        members::member_schemas,
        operations::get_operation,
        service::openapi_json,
        service::metrics,
        service::healthz,
    ),
    components(schemas(model::ErrorResponse, model::ErrorDetail, model::SyncMemberState)),
    modifiers(&Security, &SharedErrors),
    tags(
        (name = "syncGroups", description = "Sync groups: a hub, members, a sync schema, a policy, an interval."),
        (name = "syncMembers", description = "The member databases of a sync group."),
        (name = "operations", description = "Long operations started by 202 answers."),
        (name = "service", description = "The document, metrics and health of the server."),
    )
)]
struct ApiDoc;

/// The OpenAPI 3 document served at `/v1/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Declares the bearer scheme and requires it everywhere (`/healthz` opts out).
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A token from `hubsync token create`."))
                    .build(),
            ),
        );
        openapi.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    }
}

/// Adds the errors that any protected route can answer, whatever it does:
/// 401 and 500 everywhere, 403 on changes, 400/413/415 where a body is read,
/// 400 where path or query parameters are read.
struct SharedErrors;

fn error(description: &str) -> RefOr<Response> {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorResponse"))).build();
    RefOr::T(ResponseBuilder::new().description(description).content("application/json", content).build())
}

fn add(operation: &mut Operation, status: u16, description: &str) {
    operation.responses.responses.entry(status.to_string()).or_insert_with(|| error(description));
}

fn methods(item: &mut PathItem) -> [(bool, Option<&mut Operation>); 5] {
    [
        (false, item.get.as_mut()),
        (true, item.put.as_mut()),
        (true, item.post.as_mut()),
        (true, item.delete.as_mut()),
        (true, item.patch.as_mut()),
    ]
}

impl Modify for SharedErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            if path == service::HEALTHZ {
                continue;
            }
            for (changes, operation) in methods(item) {
                let Some(operation) = operation else { continue };
                add(operation, 401, "No or an unknown bearer token (`Unauthorized`, `InvalidToken`).");
                add(
                    operation,
                    500,
                    "The server failed (`InternalError`; `SecretKeyMissing` when a password must be stored but no secret key is set).",
                );
                if changes {
                    add(operation, 403, "The token is read-only (`ReadOnlyToken`).");
                }
                if operation.request_body.is_some() {
                    add(operation, 400, "The body is not acceptable.");
                    add(operation, 413, "The body is larger than 1 MiB (`PayloadTooLarge`).");
                    add(
                        operation,
                        415,
                        "The body is not declared `Content-Type: application/json` (`UnsupportedMediaType`).",
                    );
                }
                if operation.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                    add(
                        operation,
                        400,
                        "A path segment or query parameter cannot be read (`InvalidPath`, `InvalidQueryParameter`).",
                    );
                }
            }
        }
    }
}
