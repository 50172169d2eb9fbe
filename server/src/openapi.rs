//! `GET /openapi.json`: the API described in OpenAPI 3.1, its schemas generated from the
//! protocol's own types (`he_layers::protocol`, through `schemars`), so the description cannot
//! drift from what the server parses and answers.

use he_layers::protocol::{
    ComputeRequest, ComputeResponse, ErrorBody, KeysResponse, ModelConfig, ModelInfo, Plan,
};
use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

/// The error statuses every route may answer, with the kinds behind them.
fn error_responses(extra: &[(&str, &str)]) -> Map<String, Value> {
    let mut m = Map::new();
    let err = |why: &str| {
        json!({
            "description": why,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        })
    };
    for (status, why) in [
        (
            "400",
            "unparsable (bad_multipart, invalid_json, malformed_binary, …)",
        ),
        ("401", "unauthorized: a token is required (--api-tokens)"),
        (
            "404",
            "unknown_route, unknown_net, unknown_key, unknown_plan",
        ),
        ("408", "timeout: the body did not arrive in time; cancelled"),
        ("413", "too_large"),
        (
            "429",
            "over_quota: the token's jobs in flight (Retry-After)",
        ),
        (
            "500",
            "internal (no detail; the log has it under x-request-id)",
        ),
        ("503", "busy: the job queue is full; compute_timeout: the job ran past the request timeout (Retry-After)"),
    ]
    .iter()
    .chain(extra)
    {
        m.insert((*status).to_string(), err(why));
    }
    m
}

/// A multipart body of these parts (name, schema, required), in this order.
fn multipart(parts: &[(&str, Value, bool)]) -> Value {
    let props: Map<String, Value> = parts
        .iter()
        .map(|(n, s, _)| ((*n).to_string(), s.clone()))
        .collect();
    let required: Vec<&str> = parts.iter().filter(|p| p.2).map(|p| p.0).collect();
    json!({"multipart/form-data": {"schema": {"type": "object", "properties": props,
        "required": required}}})
}

/// The whole document.
pub fn document() -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let schema = |v: schemars::Schema| v.to_value();
    let model_config = schema(generator.subschema_for::<ModelConfig>());
    let plan = schema(generator.subschema_for::<Plan>());
    let compute_request = schema(generator.subschema_for::<ComputeRequest>());
    let compute_response = schema(generator.subschema_for::<ComputeResponse>());
    let keys_response = schema(generator.subschema_for::<KeysResponse>());
    let models = schema(generator.subschema_for::<Vec<ModelInfo>>());
    let _ = generator.subschema_for::<ErrorBody>();
    let schemas = generator.take_definitions(true);
    let binary = json!({"type": "string", "format": "binary"});
    let ok_json = |desc: &str, s: &Value| json!({"description": desc, "content": {"application/json": {"schema": s}}});
    let with_errors = |ok: Value, extra: &[(&str, &str)]| {
        let mut r = error_responses(extra);
        r.insert("200".into(), ok);
        Value::Object(r)
    };
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Encrypted inference",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Runs a model's layers on BFV ciphertexts the server cannot read. Keys and ciphertexts travel as binary parts in the versioned format of he_layers::crypto::serial. With --api-tokens every route but /health, /ready and /openapi.json needs Authorization: Bearer <token>. Every answer carries x-request-id."
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        },
        "security": [{"bearer": []}],
        "paths": {
            "/health": {"get": {"summary": "Liveness", "security": [],
                "responses": {"200": {"description": "the process serves"}}}},
            "/ready": {"get": {"summary": "Readiness", "security": [],
                "responses": {"200": {"description": "taking jobs"},
                              "503": {"description": "stopping, or the job queue is full"}}}},
            "/metrics": {"get": {"summary": "Prometheus text metrics",
                "responses": {"200": {"description": "text/plain; version=0.0.4"}}}},
            "/openapi.json": {"get": {"summary": "This document", "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1"}}}},
            "/models": {"get": {"summary": "The served models",
                "responses": with_errors(ok_json("per model: input, classes, layers, re-encryption positions", &models), &[])}},
            "/plan": {"post": {"summary": "Judge a configuration once and name its plan",
                "requestBody": {"required": true, "content": {"application/json": {"schema": model_config}}},
                "responses": with_errors(ok_json("the plan: segments, packings, Galois elements, circuit privacy", &plan),
                    &[("422", "invalid_parameters, reencrypt_not_allowed, no_room_for_circuit_privacy, …")])}},
            "/keys": {"post": {"summary": "Upload public keys (content-addressed)",
                "requestBody": {"required": true, "content": multipart(&[
                    ("parameters", binary.clone(), true), ("public_key", binary.clone(), true),
                    ("relinearization_key", binary.clone(), false), ("galois_keys", binary.clone(), false)])},
                "responses": with_errors(ok_json("the key id", &keys_response),
                    &[("422", "invalid_parameters, parameter_mismatch")])}},
            "/keys/{key_id}": {"get": {"summary": "Whether the keys are held",
                "parameters": [{"name": "key_id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": with_errors(ok_json("held", &keys_response), &[])}},
            "/compute": {"post": {"summary": "Run one segment of a plan on ciphertexts",
                "requestBody": {"required": true, "content": multipart(&[
                    ("request", compute_request, true), ("ciphertexts", binary.clone(), true)])},
                "responses": with_errors(json!({"description": "the sanitized answer",
                    "content": multipart(&[("result", compute_response, true), ("ciphertexts", binary, true)])}),
                    &[("422", "input_mismatch, missing_key, overflow, parameter_mismatch, …")])}}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_resolves_to_a_generated_schema() {
        let doc = document();
        let schemas = doc["components"]["schemas"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for name in [
            "ModelConfig",
            "Plan",
            "ComputeRequest",
            "ComputeResponse",
            "ErrorBody",
            "Security",
        ] {
            assert!(
                schemas.contains_key(name),
                "{name} missing: {:?}",
                schemas.keys()
            );
        }
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|x| refs(x, out));
                }
                Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 10);
        for r in all {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or(&r);
            assert!(schemas.contains_key(name), "dangling reference {r}");
        }
        // The request type's fields are the ones the server parses.
        let req = &schemas["ComputeRequest"]["properties"];
        for f in [
            "plan_id",
            "plain_modulus",
            "key_id",
            "layers",
            "batch",
            "accept_compressed",
        ] {
            assert!(req.get(f).is_some(), "ComputeRequest.{f}");
        }
    }
}
