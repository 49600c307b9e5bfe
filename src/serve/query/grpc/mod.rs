//! The gRPC query API (`chokepoint.v1.Findings`, proto/chokepoint/v1/findings.proto): `List`
//! as `/findings` answers, and `Watch`, which pushes the findings whenever one appears, goes,
//! or changes severity, activity or score (to two decimals).

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::wrappers::WatchStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::api::dto::FindingsDoc;
use crate::api::view::View;
use crate::serve::pipeline::Query;
use crate::serve::query::http::{ask, filter_findings, ApiState};

/// The generated code (checked in; see proto/README.md).
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!("chokepoint.v1.rs");
}

pub use pb::findings_server::FindingsServer;

pub struct FindingsService {
    pub state: ApiState,
}

fn reply(doc: &FindingsDoc) -> pb::FindingsReply {
    pb::FindingsReply {
        window_start: doc.window.start.clone(),
        window_end: doc.window.end.clone(),
        traces: doc.traces,
        spans: doc.spans,
        findings: doc
            .findings
            .iter()
            .map(|f| pb::Finding {
                id: f.id.clone(),
                kind: f.kind.to_owned(),
                node: f.node.clone(),
                node_type: f.node_type.to_owned(),
                score: f.score,
                severity: f.severity.to_owned(),
                confidence: f.confidence.to_owned(),
                summary: f.summary.clone(),
                evidence_json: serde_json::to_string(&f.evidence).unwrap_or_default(),
                exemplar_trace_ids: f.exemplar_trace_ids.clone(),
                remediation: f.remediation.clone(),
            })
            .collect(),
    }
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

pub fn service(
    state: ApiState,
) -> tonic::service::interceptor::InterceptedService<
    FindingsServer<FindingsService>,
    crate::serve::auth::Bearer,
> {
    let bearer = crate::serve::auth::Bearer(state.token.clone());
    tonic::service::interceptor::InterceptedService::new(
        FindingsServer::new(FindingsService { state }),
        bearer,
    )
}

type WatchOut = Pin<Box<dyn Stream<Item = Result<pb::FindingsReply, Status>> + Send>>;

#[tonic::async_trait]
impl pb::findings_server::Findings for FindingsService {
    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::FindingsReply>, Status> {
        let r = request.into_inner();
        let doc = match opt(&r.window) {
            None => self.state.view.borrow().findings.clone(),
            Some(w) => {
                let window = crate::clock::parse_duration(&w)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        Status::invalid_argument(format!("window {w:?} is not a duration"))
                    })?;
                ask(&self.state, |reply| Query::Findings {
                    window: crate::serve::pipeline::Range::Last(window),
                    reply,
                })
                .await
                .map_err(|_| Status::unavailable("analysis pipeline unavailable"))?
            }
        };
        let doc = filter_findings(doc, opt(&r.kind), opt(&r.min_severity), opt(&r.node))
            .map_err(Status::invalid_argument)?;
        Ok(Response::new(reply(&doc)))
    }

    type WatchStream = WatchOut;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let r = request.into_inner();
        let (kind, min, node) = (opt(&r.kind), opt(&r.min_severity), opt(&r.node));
        // Validate the filters once, up front.
        filter_findings(
            FindingsDoc::empty(),
            kind.clone(),
            min.clone(),
            node.clone(),
        )
        .map_err(Status::invalid_argument)?;
        // Pushed when a finding appears, goes, or changes severity, activity or score.
        let mut last: Option<Vec<(String, String, bool, u64)>> = None;
        let stream =
            WatchStream::new(self.state.view.clone()).filter_map(move |view: Arc<View>| {
                let doc = filter_findings(
                    view.findings.clone(),
                    kind.clone(),
                    min.clone(),
                    node.clone(),
                )
                .ok()?;
                let signature: Vec<(String, String, bool, u64)> = doc
                    .findings
                    .iter()
                    .map(|f| {
                        (
                            f.id.clone(),
                            f.severity.to_owned(),
                            f.active,
                            (f.score * 100.0).round() as u64,
                        )
                    })
                    .collect();
                if last.as_ref() == Some(&signature) {
                    return None;
                }
                last = Some(signature);
                Some(Ok(reply(&doc)))
            });
        Ok(Response::new(Box::pin(stream)))
    }
}
