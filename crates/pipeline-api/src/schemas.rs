//! Projects and their extraction schemas (the schema stage, queue family `facts`): create a
//! project with a schema, read, replace or remove its schema, list its versions, and the
//! shipped templates. Writes go through [`pipeline_ops::schemas`], so a schema is validated
//! as a whole before anything is stored, and an invalid one is answered 422 with every
//! problem and its path (`errors`), beside the usual `detail`.

use std::fmt;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use pipeline_ops::schemas::{self as ops, SchemaSource, SchemaWriteError};
use pipeline_store::facts::{self, ProjectInfo, StoredSchema};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ApiJson, ApiPath, ErrorBody, clip};

/// Most schema errors listed in an answer (the count of the rest is in `detail`).
pub const MAX_LISTED_ERRORS: usize = 100;

/// Longest project name or id looked up, in characters (names are at most 200).
const MAX_PROJECT_REF_CHARS: usize = 200;

/// The documented pattern of a project name: no control characters, not blank.
pub const NAME_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u001f\u007f-\u009f]*$";

/// A project.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProjectInfoBody {
    /// Project id.
    pub id: Uuid,
    /// Its unique name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Its current schema version; `null` when it has no schema (its pages skip the stage).
    pub schema_version: Option<i32>,
}

impl From<ProjectInfo> for ProjectInfoBody {
    fn from(p: ProjectInfo) -> Self {
        Self {
            id: p.id,
            name: p.name,
            created_at: p.created_at,
            schema_version: p.schema_version,
        }
    }
}

/// One version of a project's extraction schema.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SchemaBody {
    /// The version (1, 2, …): every stored value names the version that made it.
    pub version: i32,
    /// The schema's name (its top-level record's entity).
    pub name: String,
    /// `markup` or `llm`.
    pub backend: String,
    /// The shipped template it came from, if any.
    pub template: Option<String>,
    /// When this version was stored.
    pub created_at: DateTime<Utc>,
    /// The validated schema, as canonical JSON.
    pub schema: Value,
    /// The schema as it was written (YAML or JSON).
    pub source_text: String,
}

impl From<StoredSchema> for SchemaBody {
    fn from(s: StoredSchema) -> Self {
        Self {
            version: s.version,
            name: s.name,
            backend: s.backend,
            template: s.template,
            created_at: s.created_at,
            schema: s.schema,
            source_text: s.source_text,
        }
    }
}

/// A schema given as YAML or JSON text, or as a JSON document.
#[derive(Debug, Clone)]
pub struct SchemaInput(String);

/// How the OpenAPI document shows [`SchemaInput`].
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum SchemaInputDoc {
    /// The schema's text, YAML or JSON.
    Text(String),
    /// The schema as a JSON document (its fields keep their order).
    Document(std::collections::HashMap<String, Value>),
}

impl<'de> Deserialize<'de> for SchemaInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TopVisitor)
    }
}

/// Reads a string as it is, or an object as JSON text with its keys in the order sent
/// (`serde_json::Value` would sort them, and a schema's fields are ordered).
struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = SchemaInput;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the schema's YAML or JSON text, or a JSON object")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<SchemaInput, E> {
        Ok(SchemaInput(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<SchemaInput, E> {
        Ok(SchemaInput(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SchemaInput, A::Error> {
        Ok(SchemaInput(JsonText::visit_object(map)?))
    }
}

/// Any JSON value, re-serialized in the order it was read.
struct JsonText(String);

impl JsonText {
    fn visit_object<'de, A: MapAccess<'de>>(mut map: A) -> Result<String, A::Error> {
        let mut out = String::from("{");
        let mut first = true;
        while let Some(key) = map.next_key::<String>()? {
            let value: JsonText = map.next_value()?;
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&Value::String(key).to_string());
            out.push(':');
            out.push_str(&value.0);
        }
        out.push('}');
        Ok(out)
    }
}

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyVisitor)
    }
}

struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = JsonText;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<JsonText, E> {
        Ok(JsonText(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<JsonText, E> {
        Ok(JsonText(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<JsonText, E> {
        Ok(JsonText(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<JsonText, E> {
        Ok(JsonText(Value::from(v).to_string()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<JsonText, E> {
        Ok(JsonText(Value::String(v.to_owned()).to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<JsonText, E> {
        Ok(JsonText("null".into()))
    }

    fn visit_none<E: de::Error>(self) -> Result<JsonText, E> {
        Ok(JsonText("null".into()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonText, A::Error> {
        let mut out = String::from("[");
        let mut first = true;
        while let Some(v) = seq.next_element::<JsonText>()? {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&v.0);
        }
        out.push(']');
        Ok(JsonText(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<JsonText, A::Error> {
        JsonText::visit_object(map).map(JsonText)
    }
}

/// `POST /api/v1/projects` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProjectRequest {
    /// The project's name: unique, at most 200 characters, not blank, no control
    /// characters (leading and trailing spaces are dropped).
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: String,
    /// A shipped template to start from (`GET /api/v1/schema-templates`); not with `schema`.
    pub template: Option<String>,
    /// The schema: its YAML or JSON text, or a JSON document; not with `template`.
    #[schema(value_type = Option<SchemaInputDoc>)]
    pub schema: Option<SchemaInput>,
}

/// `PUT /api/v1/projects/{project}/schema` body: exactly one of `template` and `schema`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSchemaRequest {
    /// A shipped template by name.
    pub template: Option<String>,
    /// The schema: its YAML or JSON text, or a JSON document.
    #[schema(value_type = Option<SchemaInputDoc>)]
    pub schema: Option<SchemaInput>,
}

/// A created project and its schema.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedProject {
    /// The project.
    pub project: ProjectInfoBody,
    /// Its schema, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaBody>,
}

/// The project's schema after a write.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SchemaWritten {
    /// Whether a new version was stored (`false`: the schema equals the current one, whose
    /// version is kept).
    pub created: bool,
    /// The current version.
    #[serde(flatten)]
    pub schema: SchemaBody,
}

/// Every version of a project's schema.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SchemaVersions {
    /// The versions, newest first (at most 1,000).
    pub versions: Vec<SchemaBody>,
}

/// A shipped template.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TemplateSummary {
    /// Its name (also its schema's name).
    pub name: String,
    /// What it extracts.
    pub description: String,
}

/// A shipped template with its schema.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TemplateBody {
    /// Its name (also its schema's name).
    pub name: String,
    /// What it extracts.
    pub description: String,
    /// The schema as YAML.
    pub text: String,
    /// The schema as canonical JSON.
    pub schema: Value,
}

/// One problem of a schema.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SchemaErrorBody {
    /// Where: `fields.price.type`, `entities.plans.key[0]`; empty for the whole text.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// A 422 of the schema routes: `detail` as every error has and, for an invalid schema, each
/// problem (`errors` is absent when the request itself was refused: a body that is not an
/// object, neither `template` nor `schema`, an unknown template).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvalidSchemaBody {
    /// `the schema is invalid: ` and the problems, or why the request was refused.
    pub detail: String,
    /// Every problem with its path (at most 100), for an invalid schema.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub errors: Vec<SchemaErrorBody>,
}

/// A failed write: an [`ApiError`], or an invalid schema with its problems.
#[derive(Debug)]
pub enum WriteFailure {
    /// Any other error.
    Api(ApiError),
    /// The schema did not validate.
    Invalid(InvalidSchemaBody),
}

impl From<ApiError> for WriteFailure {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl IntoResponse for WriteFailure {
    fn into_response(self) -> Response {
        match self {
            Self::Api(e) => e.into_response(),
            Self::Invalid(body) => (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response(),
        }
    }
}

impl From<SchemaWriteError> for WriteFailure {
    fn from(e: SchemaWriteError) -> Self {
        match e {
            SchemaWriteError::Invalid(errors) => {
                let total = errors.0.len();
                let listed: Vec<SchemaErrorBody> = errors
                    .0
                    .into_iter()
                    .take(MAX_LISTED_ERRORS)
                    .map(|e| SchemaErrorBody {
                        path: e.path,
                        message: e.message,
                    })
                    .collect();
                let mut detail = listed
                    .iter()
                    .take(10)
                    .map(|e| {
                        if e.path.is_empty() {
                            e.message.clone()
                        } else {
                            format!("{}: {}", e.path, e.message)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                if total > 10 {
                    detail.push_str(&format!("; and {} more", total - 10));
                }
                Self::Invalid(InvalidSchemaBody {
                    detail: crate::error::clip_to(
                        &format!("the schema is invalid: {detail}"),
                        2000,
                    ),
                    errors: listed,
                })
            }
            other => Self::Api(write_error(other)),
        }
    }
}

/// A write error other than an invalid schema, as an API answer.
fn write_error(e: SchemaWriteError) -> ApiError {
    match e {
        SchemaWriteError::UnknownTemplate(name) => ApiError::unprocessable(format!(
            "unknown template `{}` (expected one of: {})",
            clip(&name),
            ops::template_names()
        )),
        SchemaWriteError::BadName(m) => ApiError::unprocessable(m),
        SchemaWriteError::UnknownProject(p) => {
            ApiError::not_found(format!("project `{}` not found", clip(&p)))
        }
        SchemaWriteError::NameTaken(n) => ApiError::new(
            StatusCode::CONFLICT,
            format!("a project named `{}` already exists", clip(&n)),
        ),
        SchemaWriteError::Store(e) => e.into(),
        other => ApiError::internal("schema write failed", &other),
    }
}

/// Where a write's schema comes from: exactly one of `template` and `schema`.
fn source_of<'a>(
    template: &'a Option<String>,
    schema: &'a Option<SchemaInput>,
    required: bool,
) -> Result<Option<SchemaSource<'a>>, ApiError> {
    match (template, schema) {
        (Some(_), Some(_)) => Err(ApiError::unprocessable(
            "give either `template` or `schema`, not both",
        )),
        (Some(t), None) => Ok(Some(SchemaSource::Template(t))),
        (None, Some(s)) => Ok(Some(SchemaSource::Text(&s.0))),
        (None, None) if required => Err(ApiError::unprocessable(
            "give `template` (a template's name) or `schema` (YAML or JSON text, or a JSON object)",
        )),
        (None, None) => Ok(None),
    }
}

/// Refuses a schema that holds NUL characters (Postgres text and jsonb cannot store them)
/// before it reaches the store; any other problem is the validation's to report.
fn refuse_nul(source: Option<SchemaSource<'_>>) -> Result<(), ApiError> {
    let Some(SchemaSource::Text(text)) = source else {
        return Ok(());
    };
    let nul = text.contains('\0')
        || ops::check(SchemaSource::Text(text))
            .is_ok_and(|c| c.schema.to_json().to_string().contains("\\u0000"));
    if nul {
        return Err(ApiError::unprocessable(
            "the schema must not contain NUL characters",
        ));
    }
    Ok(())
}

/// The project a path names, by id or name; 404 when there is none (a reference that
/// cannot name a project, too long or holding NUL, is not looked up).
pub async fn project_of(state: &AppState, reference: &str) -> Result<ProjectInfo, ApiError> {
    let not_found = || ApiError::not_found(format!("project `{}` not found", clip(reference)));
    if reference.contains('\0') || reference.chars().count() > MAX_PROJECT_REF_CHARS {
        return Err(not_found());
    }
    facts::find_project(&state.services.db, reference)
        .await?
        .ok_or_else(not_found)
}

/// The documented checks of a project name, made before the name reaches the store: not
/// blank, no control characters, at most 200 characters.
fn check_name(name: &str) -> Result<(), ApiError> {
    if name.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "the project name contains control characters",
        ));
    }
    if name.chars().count() > 200 {
        return Err(ApiError::unprocessable(
            "the project name is over 200 characters",
        ));
    }
    if name.trim().is_empty() {
        return Err(ApiError::unprocessable("the project name is blank"));
    }
    Ok(())
}

/// Creates a project, with a schema from a template or from its text (validated first: an
/// invalid schema creates nothing).
#[utoipa::path(
    post, path = "/api/v1/projects", tag = "schemas", request_body = CreateProjectRequest,
    responses(
        (status = 201, description = "The project (and its schema, version 1)", body = CreatedProject),
        (status = 409, description = "A project has that name", body = ErrorBody),
        (status = 422, description = "An invalid schema (`errors` lists every problem with its path), an unknown template (the choices are named), both `template` and `schema`, or a blank name, one over 200 characters or with control characters", body = InvalidSchemaBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_project(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateProjectRequest>,
) -> Result<(StatusCode, Json<CreatedProject>), WriteFailure> {
    check_name(&body.name)?;
    let source = source_of(&body.template, &body.schema, false)?;
    refuse_nul(source)?;
    let (project, schema) = ops::create_project(&state.services.db, &body.name, source).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedProject {
            project: project.into(),
            schema: schema.map(Into::into),
        }),
    ))
}

/// The project's current schema.
#[utoipa::path(
    get, path = "/api/v1/projects/{project}/schema", tag = "schemas",
    params(("project" = String, Path, description = "Project id or name")),
    responses(
        (status = 200, description = "The current schema", body = SchemaBody),
        (status = 404, description = "No such project, or it has no schema", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn show_schema(
    State(state): State<AppState>,
    ApiPath(project): ApiPath<String>,
) -> Result<Json<SchemaBody>, ApiError> {
    let p = project_of(&state, &project).await?;
    let current = facts::current_schema(&state.services.db, p.id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("project `{}` has no schema", clip(&p.name))))?;
    Ok(Json(current.into()))
}

/// Makes a template or a schema the project's schema: a new version unless it equals the
/// current one (then the current version is kept and `created` is false). Pages
/// extracted from then on are read with it; stored values keep the version that made them.
#[utoipa::path(
    put, path = "/api/v1/projects/{project}/schema", tag = "schemas",
    params(("project" = String, Path, description = "Project id or name")),
    request_body = PutSchemaRequest,
    responses(
        (status = 200, description = "The current schema and whether it is a new version", body = SchemaWritten),
        (status = 404, description = "No such project", body = ErrorBody),
        (status = 422, description = "An invalid schema (`errors` lists every problem with its path), an unknown template, or not exactly one of `template` and `schema`", body = InvalidSchemaBody),
    ),
    security(("api_key" = []))
)]
pub async fn put_schema(
    State(state): State<AppState>,
    ApiPath(project): ApiPath<String>,
    ApiJson(body): ApiJson<PutSchemaRequest>,
) -> Result<Json<SchemaWritten>, WriteFailure> {
    let source = source_of(&body.template, &body.schema, true)?
        .ok_or_else(|| ApiError::unprocessable("give `template` or `schema`"))?;
    refuse_nul(Some(source))?;
    let p = project_of(&state, &project).await?;
    let (stored, created) = ops::set_schema(&state.services.db, p.id, source).await?;
    Ok(Json(SchemaWritten {
        created,
        schema: stored.into(),
    }))
}

/// Removes the project's schema: its pages skip the stage from then on. Its versions and
/// the records they made stay.
#[utoipa::path(
    delete, path = "/api/v1/projects/{project}/schema", tag = "schemas",
    params(("project" = String, Path, description = "Project id or name")),
    responses(
        (status = 204, description = "The project has no schema any more"),
        (status = 404, description = "No such project, or it has no schema to remove", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn delete_schema(
    State(state): State<AppState>,
    ApiPath(project): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let p = project_of(&state, &project).await?;
    // Like GET: a project without a current schema has none to remove.
    if p.schema_version.is_none() {
        return Err(ApiError::not_found(format!(
            "project `{}` has no extraction schema",
            clip(&project)
        )));
    }
    if !facts::clear_schema(&state.services.db, p.id).await? {
        return Err(ApiError::not_found(format!(
            "project `{}` not found",
            clip(&project)
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Every version of the project's schema, newest first (at most 1,000); empty when it never
/// had one.
#[utoipa::path(
    get, path = "/api/v1/projects/{project}/schema/versions", tag = "schemas",
    params(("project" = String, Path, description = "Project id or name")),
    responses(
        (status = 200, description = "The versions, newest first", body = SchemaVersions),
        (status = 404, description = "No such project", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn schema_versions(
    State(state): State<AppState>,
    ApiPath(project): ApiPath<String>,
) -> Result<Json<SchemaVersions>, ApiError> {
    let p = project_of(&state, &project).await?;
    let versions = facts::schema_history(&state.services.db, p.id).await?;
    Ok(Json(SchemaVersions {
        versions: versions.into_iter().map(Into::into).collect(),
    }))
}

/// The shipped schema templates.
#[utoipa::path(
    get, path = "/api/v1/schema-templates", tag = "schemas",
    responses((status = 200, description = "Every template", body = Vec<TemplateSummary>)),
    security(("api_key" = []))
)]
pub async fn templates() -> Json<Vec<TemplateSummary>> {
    Json(
        facts_core::templates()
            .iter()
            .map(|t| TemplateSummary {
                name: t.name.to_owned(),
                description: t.description.to_owned(),
            })
            .collect(),
    )
}

/// One shipped template: its YAML and its schema as JSON.
#[utoipa::path(
    get, path = "/api/v1/schema-templates/{name}", tag = "schemas",
    params(("name" = String, Path, description = "Template name")),
    responses(
        (status = 200, description = "The template", body = TemplateBody),
        (status = 404, description = "No such template (the choices are named)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn template(ApiPath(name): ApiPath<String>) -> Result<Json<TemplateBody>, ApiError> {
    let t = facts_core::template(&name).ok_or_else(|| {
        ApiError::not_found(format!(
            "unknown template `{}` (expected one of: {})",
            clip(&name),
            ops::template_names()
        ))
    })?;
    Ok(Json(TemplateBody {
        name: t.name.to_owned(),
        description: t.description.to_owned(),
        text: t.text.to_owned(),
        schema: t.schema().to_json(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_object_keeps_its_key_order() {
        let body: CreateProjectRequest = serde_json::from_str(
            r#"{"name": "p", "schema": {"name": "x", "fields": {"zeta": "text", "alpha": {"type": "integer", "from": [{"meta": "a"}, null, 1.5, true]}}}}"#,
        )
        .expect("parses");
        assert_eq!(
            body.schema.expect("schema").0,
            r#"{"name":"x","fields":{"zeta":"text","alpha":{"type":"integer","from":[{"meta":"a"},null,1.5,true]}}}"#
        );
        let text: PutSchemaRequest =
            serde_json::from_str(r#"{"schema": "name: x\n"}"#).expect("parses");
        assert_eq!(text.schema.expect("schema").0, "name: x\n");
        assert!(serde_json::from_str::<PutSchemaRequest>(r#"{"schema": [1]}"#).is_err());
    }

    #[test]
    fn the_documented_name_pattern_says_what_the_server_accepts() {
        let re = regex::Regex::new(NAME_PATTERN).expect("compiles");
        for s in [
            "a",
            " a ",
            "ok name",
            "\u{a0}",
            " ",
            "",
            "a\u{7}",
            "\u{2003}x",
            "x\u{85}",
        ] {
            assert_eq!(re.is_match(s), check_name(s).is_ok(), "{s:?}");
        }
        let doc = serde_json::to_value(crate::openapi()).expect("document");
        let pattern =
            &doc["components"]["schemas"]["CreateProjectRequest"]["properties"]["name"]["pattern"];
        assert_eq!(pattern, NAME_PATTERN);
    }
}
