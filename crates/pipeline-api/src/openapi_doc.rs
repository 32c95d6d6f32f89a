//! The answers every operation can give whatever its handler does, added to the generated
//! document in one place, from the same constants the middleware uses, so no handler's
//! `#[utoipa::path]` can forget one: the key check (401, and 429 for an address guessing
//! keys), the request-head limits (414,
//! 431), overload (503 with `Retry-After`), and internal errors (500 with a request id); for
//! operations with a body also 408, 413 and 415. Every `{kind}` path parameter gets the
//! family names as its enum, from [`Family::ALL`], so the document cannot drift from them.

use pipeline_ops::Family;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, OpenApi, Ref, Response, ResponseBuilder, Type,
};

fn error(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

fn overloaded() -> Response {
    let mut r = error(
        "Overloaded (no database connection free in time, a backend unreachable, the request \
         took too long, or every connection busy): retry after `Retry-After` seconds",
    );
    r.headers.insert(
        "Retry-After".into(),
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::Integer))
            .description(Some("Seconds to wait before retrying"))
            .build(),
    );
    r
}

fn throttled() -> Response {
    let mut r = error(
        "Too many different wrong API keys from this client address: no key from it is \
         checked until `Retry-After` seconds have passed",
    );
    r.headers.insert(
        "Retry-After".into(),
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::Integer))
            .description(Some(
                "Seconds until keys from this address are checked again",
            ))
            .build(),
    );
    r
}

fn add(op: &mut Operation, status: &str, response: Response) {
    // A handler's own, more specific description wins.
    op.responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| response.into());
}

/// A `{kind}` path parameter is one of the families' names.
fn type_kind(op: &mut Operation) {
    let names: Vec<&str> = Family::ALL.iter().map(|f| f.as_str()).collect();
    for p in op.parameters.iter_mut().flatten() {
        if p.name == "kind" && p.parameter_in == ParameterIn::Path {
            p.schema = Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(names.clone()))
                    .into(),
            );
        }
    }
}

/// Adds the common answers to every operation under `/api` in `doc`.
pub fn complete(doc: &mut OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/api/") {
            continue;
        }
        let ops = [
            item.get.as_mut(),
            item.post.as_mut(),
            item.put.as_mut(),
            item.patch.as_mut(),
            item.delete.as_mut(),
        ];
        for op in ops.into_iter().flatten() {
            type_kind(op);
            add(op, "401", error("Missing or wrong API key"));
            add(op, "429", throttled());
            add(
                op,
                "414",
                error("The request target is over 8 KiB (path and query)"),
            );
            add(
                op,
                "431",
                error("More than 100 request headers, or over 16 KiB of them"),
            );
            add(
                op,
                "500",
                error(
                    "Internal error: `detail` says only that; `request_id` (also in \
                     `X-Request-Id`) names the log line with the cause",
                ),
            );
            add(op, "503", overloaded());
            if op.request_body.is_some() {
                add(
                    op,
                    "408",
                    error("The body did not arrive within `api.body_timeout_ms`"),
                );
                add(op, "413", error("The body is over `api.max_body_bytes`"));
                add(
                    op,
                    "415",
                    error("The body is not sent as `Content-Type: application/json`"),
                );
            }
        }
    }
}
