//! `GET /openapi.json`: the OpenAPI 3.1 document of every REST endpoint,
//! derived from the handlers' `#[utoipa::path]` attributes and the answer
//! types themselves, so that it describes what the server really sends.

use std::sync::LazyLock;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::SchemaType;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, RefOr, ResponseBuilder, Schema, Type};
use utoipa::{OpenApi, ToSchema};

use crate::access::ALWAYS_PUBLIC;
use crate::error::json_error;
use crate::input::RAW_IMAGE_TYPES;
use crate::{kserve, models, ops, predict, tfserving};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "fovea",
        description = "Image classification: fovea's simple API, TF Serving's REST API and KServe \
            V2 (Open Inference Protocol) REST, served at once (gRPC for TF Serving and KServe is \
            on its own port and not described here).\n\n\
            Errors: the simple API and the operational endpoints answer \
            `{\"error\": {\"code\", \"message\"}}` (codes in the README); TF Serving and KServe \
            answer `{\"error\": \"message\"}` as their own servers do. Any route also answers \
            405 (`method_not_allowed`) to a method it does not serve, 413 (`body_too_large`) to a \
            body over `--max-body-bytes`, and an unknown path 404 (`route_not_found`).",
    ),
    paths(
        ops::index,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        openapi_json,
        models::list,
        models::reload,
        predict::predict,
        crate::stream::websocket,
        tfserving::list,
        tfserving::tf_status,
        tfserving::tf_version_status,
        tfserving::tf_label_status,
        tfserving::tf_metadata,
        tfserving::tf_version_metadata,
        tfserving::tf_label_metadata,
        tfserving::tf_predict,
        tfserving::tf_version_predict,
        tfserving::tf_label_predict,
        tfserving::tf_classify,
        tfserving::tf_version_classify,
        tfserving::tf_label_classify,
        tfserving::tf_regress,
        tfserving::tf_version_regress,
        tfserving::tf_label_regress,
        kserve::server_metadata,
        kserve::live,
        kserve::ready,
        kserve::list_models,
        kserve::repository_index,
        kserve::model_metadata,
        kserve::model_version_metadata,
        kserve::model_ready,
        kserve::model_version_ready,
        kserve::model_infer,
        kserve::model_version_infer,
    ),
    tags(
        (name = "simple", description = "fovea's own API"),
        (name = "tfserving", description = "TensorFlow Serving REST API (port 8501's paths)"),
        (name = "kserve", description = "KServe V2 / Open Inference Protocol REST, Triton's dialect"),
        (name = "ops", description = "Health, readiness, metrics, the demo page, this document"),
    ),
)]
struct ApiDoc;

/// An 8×8 PNG for the document's examples, so a client (or a tester) trying
/// an example gets a real answer rather than an undecodable-image error.
pub(crate) const EXAMPLE_PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAbElEQVR42hXNQRUAUQhCUaMYhShGeVGIQhSizB+XXA7ODDtouIHBQ4YOM8suWm5h8ZKl+0CskDiBsIioHhx76LiDw0eO3oN/4FVf+J8h0PduzBqZ8x/bxNQPwgaFy192SGgelC0q13/CJaXlA8Z7WAFXOTbyAAAAAElFTkSuQmCC";

/// Any bytes (the KServe binary tensor extension's bodies).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct Binary(Vec<u8>);

/// The document: the derived one, plus what attributes cannot say.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    for item in doc.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            optional_parameters_are_never_null(operation);
        }
    }
    document_access(&mut doc);
    if let Some(operation) = doc
        .paths
        .paths
        .get_mut("/api/v1/predict")
        .and_then(|item| item.post.as_mut())
    {
        add_raw_image_bodies(operation);
    }
    doc
}

/// What the access guard adds to every guarded operation: the two ways of
/// presenting a key (optional: keys are off unless configured), and the
/// answers the guard itself gives, in the operation's own error shape:
/// 401 (`WWW-Authenticate`), 429 (`Retry-After`) and 503 `server_busy`.
fn document_access(doc: &mut utoipa::openapi::OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "An API key from `--api-keys-file`, as `Authorization: Bearer KEY`",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        "apiKey",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-API-Key",
            "An API key from `--api-keys-file`, as `X-API-Key: KEY`",
        ))),
    );
    let integer_header = |description: &str| {
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::Integer))
            .description(Some(description))
            .build()
    };
    let string_header = |description: &str| {
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(description))
            .build()
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        // `/metrics`, `/` and `/openapi.json` are guarded unless opened by flag.
        if ALWAYS_PUBLIC.contains(&path.as_str()) {
            continue;
        }
        let body = if crate::error::is_protocol_path(path) {
            "ProtocolErrorBody"
        } else {
            "ErrorBody"
        };
        let error = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(body)))
                .build()
        };
        for operation in operations_mut(item) {
            operation.security = Some(vec![
                SecurityRequirement::default(),
                SecurityRequirement::new("bearer", Vec::<String>::new()),
                SecurityRequirement::new("apiKey", Vec::<String>::new()),
            ]);
            let answers = [
                (
                    "401",
                    ResponseBuilder::new()
                        .description("API keys are on and the request carries no valid one (`unauthenticated`, `invalid_api_key`)")
                        .header("WWW-Authenticate", string_header("`Bearer realm=\"fovea\"`")),
                ),
                (
                    "429",
                    ResponseBuilder::new()
                        .description("The client's `--rate-limit` is spent (`rate_limited`), or it has `--max-concurrent-per-client` requests in flight (`client_busy`)")
                        .header("Retry-After", integer_header("Seconds until the client's bucket has a token again (1 for `client_busy`)")),
                ),
                (
                    "503",
                    ResponseBuilder::new()
                        .description("Overloaded: `--max-concurrent-requests` in flight (`server_busy`), or the model's queue is full")
                        .header("Retry-After", integer_header("Seconds to wait before retrying")),
                ),
            ];
            for (status, response) in answers {
                operation
                    .responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| {
                        RefOr::T(response.content("application/json", error()).build())
                    });
            }
        }
    }
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// utoipa types an `Option<T>` parameter as `T` or null; a query string or
/// header has no null (absent is the "none"), and a client reading the
/// document literally would send the text `null`.
fn optional_parameters_are_never_null(operation: &mut Operation) {
    let parameters = operation.parameters.iter_mut().flatten();
    for parameter in parameters {
        if let Some(RefOr::T(Schema::Object(object))) = parameter.schema.as_mut()
            && let SchemaType::Array(types) = &mut object.schema_type
        {
            types.retain(|t| *t != Type::Null);
            if let [one] = types.as_slice() {
                object.schema_type = SchemaType::Type(one.clone());
            }
        }
    }
}

/// The raw-body form of `/api/v1/predict`: one entry per accepted content
/// type, from the list the parser itself checks against.
fn add_raw_image_bodies(operation: &mut Operation) {
    let Some(body) = operation.request_body.as_mut() else {
        return;
    };
    for media in RAW_IMAGE_TYPES {
        let schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type(*media)
            .min_length(Some(1))
            .description(Some("The encoded image itself"));
        body.content.insert(
            (*media).to_string(),
            ContentBuilder::new().schema(Some(schema)).build(),
        );
    }
}

static DOCUMENT: LazyLock<Result<Vec<u8>, String>> =
    LazyLock::new(|| serde_json::to_vec(&document()).map_err(|e| e.to_string()));

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    summary = "This OpenAPI document",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object, content_type = "application/json")),
)]
pub async fn openapi_json() -> Response {
    match &*DOCUMENT {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes.clone()).into_response(),
        Err(message) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "openapi_failed",
            &format!("cannot serialise the OpenAPI document: {message}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::body::Body;
    use axum::http::{Method, Request};
    use tower::ServiceExt;

    use super::*;
    use crate::{AppState, ServerConfig, WILDCARD_TF_ROUTE, route_paths, router};

    fn document_json() -> serde_json::Value {
        serde_json::to_value(document()).unwrap()
    }

    #[test]
    fn guarded_operations_document_keys_and_the_guards_answers_in_their_shape() {
        let doc = document_json();
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["bearer"]["scheme"], "bearer", "{schemes}");
        assert_eq!(schemes["apiKey"]["name"], "X-API-Key", "{schemes}");
        for (path, item) in doc["paths"].as_object().unwrap() {
            let guarded = !ALWAYS_PUBLIC.contains(&path.as_str());
            for (method, operation) in item.as_object().unwrap() {
                for status in ["401", "429"] {
                    assert_eq!(
                        operation["responses"].get(status).is_some(),
                        guarded,
                        "{method} {path} {status}"
                    );
                }
                if guarded {
                    assert!(
                        operation["responses"].get("503").is_some(),
                        "{method} {path}"
                    );
                }
                // Optional: the empty requirement first (keys are off by default).
                let security = &operation["security"];
                assert_eq!(security.is_array(), guarded, "{method} {path}");
                if guarded {
                    assert_eq!(security[0], serde_json::json!({}), "{method} {path}");
                }
            }
        }
        let shape = |path: &str, method: &str| {
            doc["paths"][path][method]["responses"]["401"]["content"]["application/json"]["schema"]
                ["$ref"]
                .clone()
        };
        assert_eq!(
            shape("/v2/models/{name}/infer", "post"),
            "#/components/schemas/ProtocolErrorBody"
        );
        assert_eq!(
            shape("/api/v1/models", "get"),
            "#/components/schemas/ErrorBody"
        );
        assert_eq!(
            doc["paths"]["/api/v1/predict"]["post"]["responses"]["429"]["headers"]["Retry-After"]["schema"]
                ["type"],
            "integer"
        );
    }

    /// Documented (method, path) pairs.
    fn operations(doc: &serde_json::Value) -> Vec<(Method, String)> {
        let mut found = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                found.push((method, path.clone()));
            }
        }
        found
    }

    #[test]
    fn the_document_is_openapi_3_1_with_every_reference_resolved() {
        let text = serde_json::to_string(&document()).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["openapi"], "3.1.0");
        assert_eq!(value["info"]["title"], "fovea");
        let schemas = value["components"]["schemas"].as_object().unwrap();
        let mut refs = Vec::new();
        collect_refs(&value, &mut refs);
        assert!(!refs.is_empty());
        for reference in refs {
            let name = reference.strip_prefix("#/components/schemas/").unwrap();
            assert!(schemas.contains_key(name), "dangling $ref {reference}");
        }
        let mut operation_ids = BTreeSet::new();
        for (path, item) in value["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let id = operation["operationId"].as_str().unwrap();
                assert!(operation_ids.insert(id.to_string()), "{id} twice");
                assert!(
                    !operation["responses"].as_object().unwrap().is_empty(),
                    "{method} {path} has no responses"
                );
                // Every `{parameter}` of the path is declared as a path parameter.
                let declared: BTreeSet<&str> = operation["parameters"]
                    .as_array()
                    .map(|list| {
                        list.iter()
                            .filter(|p| p["in"] == "path")
                            .map(|p| p["name"].as_str().unwrap())
                            .collect()
                    })
                    .unwrap_or_default();
                let templated: BTreeSet<&str> = path
                    .split('{')
                    .skip(1)
                    .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
                    .collect();
                assert_eq!(declared, templated, "{method} {path}");
            }
        }
    }

    fn collect_refs(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("$ref", serde_json::Value::String(r)) => out.push(r.clone()),
                        _ => collect_refs(v, out),
                    }
                }
            }
            serde_json::Value::Array(list) => list.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_route_is_documented_and_every_documented_path_is_routed() {
        let doc = document_json();
        let documented: BTreeSet<String> =
            doc["paths"].as_object().unwrap().keys().cloned().collect();
        let tf_prefix = WILDCARD_TF_ROUTE.trim_end_matches("{*rest}");
        let (under_wildcard, plain): (BTreeSet<String>, BTreeSet<String>) = documented
            .iter()
            .cloned()
            .partition(|p| p.starts_with(tf_prefix));
        let routed: BTreeSet<String> = route_paths()
            .into_iter()
            .filter(|p| *p != WILDCARD_TF_ROUTE)
            .map(str::to_string)
            .collect();
        assert_eq!(plain, routed, "documented paths vs the router's paths");
        assert!(route_paths().contains(&WILDCARD_TF_ROUTE));
        // The wildcard serves status, metadata and the three verbs, each in
        // the latest / version / label forms.
        assert_eq!(under_wildcard.len(), 15, "{under_wildcard:?}");
    }

    /// A concrete request path for a documented one.
    fn instantiate(path: &str) -> String {
        path.replace("{name}", "m")
            .replace("{version}", "1")
            .replace("{label}", "stable")
    }

    #[tokio::test]
    async fn every_documented_operation_reaches_a_handler() {
        let state = AppState::new(&ServerConfig::default()).unwrap();
        let app = router(state);
        for (method, path) in operations(&document_json()) {
            let uri = instantiate(&path);
            let request = Request::builder()
                .method(method.clone())
                .uri(&uri)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let code = value["error"]["code"].as_str().unwrap_or_default();
            assert!(
                status != StatusCode::METHOD_NOT_ALLOWED && code != "route_not_found",
                "{method} {uri} (documented as {path}) is not routed: {status} {value}"
            );
        }
    }

    #[tokio::test]
    async fn get_openapi_json_answers_the_document() {
        let state = AppState::new(&ServerConfig::default()).unwrap();
        let request = Request::get("/openapi.json").body(Body::empty()).unwrap();
        let response = router(state).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(response.into_body(), 1 << 22)
            .await
            .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value, document_json());
    }

    #[test]
    fn no_parameter_is_documented_as_null() {
        let doc = document_json();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    let kind = &parameter["schema"]["type"];
                    assert!(
                        kind.is_string(),
                        "{method} {path} {}: {kind}",
                        parameter["name"]
                    );
                }
            }
        }
    }

    #[test]
    fn predict_documents_every_body_form_the_parser_accepts() {
        let doc = document_json();
        let content = doc["paths"]["/api/v1/predict"]["post"]["requestBody"]["content"]
            .as_object()
            .unwrap();
        let mut expected: BTreeSet<&str> = RAW_IMAGE_TYPES.iter().copied().collect();
        expected.extend(["multipart/form-data", "application/json"]);
        let documented: BTreeSet<&str> = content.keys().map(String::as_str).collect();
        assert_eq!(documented, expected);
    }
}
