//! The session's transport to a server: each segment call is one `POST /compute` naming the
//! plan. A server that evicted the plan gets it again from the configuration, once; one that
//! evicted the keys gets them again (public material only), once.

use crate::retry::retrying;
use crate::{AnswerError, Api, ClientError, ComponentKeys, ConfigError};
use he_layers::crypto::{BfvParameters, Ciphertext};
use he_layers::protocol::{ComputeRequest, ModelConfig, Plan};
use net_builder::session::{SegmentAnswer, SegmentCall, SessionError, Transport};
use std::future::Future;
use std::sync::{Arc, Mutex};

/// `/compute` over HTTP for one plan and one key id per plaintext modulus.
pub struct HttpTransport<'k> {
    api: Api,
    model: ModelConfig,
    plan: Plan,
    plan_id: Mutex<String>,
    key_ids: Vec<String>,
    params: Vec<Arc<BfvParameters>>,
    keys: &'k [ComponentKeys],
}

impl<'k> HttpTransport<'k> {
    /// A transport for a plan (made from `model`), with the key ids and the keys of every
    /// plaintext modulus, in the plan's order (the public ones are uploaded again if the
    /// server has evicted them).
    pub fn new(
        api: Api,
        model: ModelConfig,
        plan: Plan,
        key_ids: Vec<String>,
        keys: &'k [ComponentKeys],
    ) -> Self {
        Self {
            api,
            model,
            plan_id: Mutex::new(plan.plan_id.clone()),
            plan,
            key_ids,
            params: keys.iter().map(|c| c.params.clone()).collect(),
            keys,
        }
    }

    fn plan_id(&self) -> String {
        self.plan_id.lock().map(|g| g.clone()).unwrap_or_default()
    }

    async fn call(&self, call: SegmentCall) -> Result<SegmentAnswer, ClientError> {
        let m = call.component;
        let (params, key_id) = self
            .params
            .get(m)
            .zip(self.key_ids.get(m))
            .ok_or(ConfigError::NoKeysForModulus { component: m })?;
        let expect = call.answer_ciphertexts;
        let body = bytes::Bytes::from(Ciphertext::batch_to_bytes(&call.cts, params));
        let bytes_up = body.len();
        let mut req = ComputeRequest {
            plan_id: self.plan_id(),
            plain_modulus: call.plain_modulus,
            key_id: key_id.clone(),
            layers: [call.layers.start, call.layers.end],
            batch: call.batch,
            accept_compressed: true,
        };
        let mut answer = retrying(|| self.api.compute(&req, params, body.clone(), expect)).await;
        if matches!(&answer, Err(ClientError::Server { kind, .. }) if kind == "unknown_plan") {
            // The session was set up with the first plan's facts: a server whose plan for
            // this configuration has changed (another model under the same name) is an error,
            // not something to decode with stale scales.
            let again = self.api.plan(&self.model).await?;
            if again != self.plan {
                return Err(AnswerError::PlanChanged.into());
            }
            let id = again.plan_id;
            if let Ok(mut g) = self.plan_id.lock() {
                g.clone_from(&id);
            }
            req.plan_id = id;
            answer = retrying(|| self.api.compute(&req, params, body.clone(), expect)).await;
        }
        if matches!(&answer, Err(ClientError::Server { kind, .. }) if kind == "unknown_key") {
            // Another client's uploads evicted ours: the same public keys again (the same
            // content address), once.
            let keys = self
                .keys
                .get(m)
                .ok_or(ConfigError::NoKeysForModulus { component: m })?;
            let (r, _) = self.api.upload_keys(keys).await?;
            req.key_id = r.key_id;
            answer = retrying(|| self.api.compute(&req, params, body.clone(), expect)).await;
        }
        let (resp, cts, received) = answer?;
        Ok(SegmentAnswer {
            cts,
            server_ms: resp.compute_ms,
            sanitize_ms: resp.sanitize_ms,
            bytes_up,
            bytes_down: received,
        })
    }
}

impl Transport for HttpTransport<'_> {
    fn compute(
        &self,
        call: SegmentCall,
    ) -> impl Future<Output = Result<SegmentAnswer, SessionError>> + Send {
        let layers = call.layers.clone();
        async move {
            self.call(call).await.map_err(|e| SessionError::Transport {
                layers,
                source: Box::new(e),
            })
        }
    }
}
