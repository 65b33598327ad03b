use super::*;

fn parse_args_all(body: &[u8]) -> Result<ExtenderArgs<'_>, ProtocolError> {
    parse_args(body, &[])
}

const FILTER_NOCACHE: &str = include_str!("../../tests/fixtures/filter-nocache.json");
const BIND: &str = include_str!("../../tests/fixtures/bind.json");

#[test]
fn parses_the_real_non_cache_body_and_echoes_nodes_byte_for_byte() {
    let args = parse_args_all(FILTER_NOCACHE.as_bytes()).unwrap();
    assert_eq!(args.pod.display_name(), "default/low-1");
    let Candidates::Nodes(nodes) = &args.candidates else {
        panic!("expected Nodes mode");
    };
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0].1.name, "fake-node-1");
    let response = filter_response(
        &args.candidates,
        &[1],
        &[("fake-node-1", "realload: node cpu-avg-5m above 0.80")],
    );
    let parsed: serde_json::Value = serde_json::from_str(&response).unwrap();
    assert_eq!(parsed["NodeNames"], serde_json::Value::Null);
    assert_eq!(parsed["Error"], "");
    assert_eq!(
        parsed["FailedNodes"]["fake-node-1"],
        "realload: node cpu-avg-5m above 0.80"
    );
    // the surviving Node is the request's bytes, unchanged
    let original: serde_json::Value = serde_json::from_str(FILTER_NOCACHE).unwrap();
    assert_eq!(parsed["Nodes"]["items"][0], original["Nodes"]["items"][1]);
    assert!(response.contains(nodes[1].0.get()));
}

#[test]
fn cache_mode_answers_with_names_only() {
    let body = FILTER_NOCACHE.replace("\"NodeNames\":null", "\"NodeNames\":[\"a\",\"b\\\"q\"]");
    // swap the modes: Nodes null, names set
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let cache = serde_json::json!({"Pod": v["Pod"], "Nodes": null, "NodeNames": ["a", "b\"q"]});
    let text = serde_json::to_string(&cache).unwrap();
    let args = parse_args_all(text.as_bytes()).unwrap();
    assert!(matches!(args.candidates, Candidates::Names(ref n) if n.len() == 2));
    let response = filter_response(&args.candidates, &[0, 1], &[]);
    assert_eq!(
        response,
        r#"{"Nodes":null,"NodeNames":["a","b\"q"],"FailedNodes":{},"FailedAndUnresolvableNodes":{},"Error":""}"#
    );
}

#[test]
fn lowercase_keys_are_accepted_too() {
    let args = parse_args_all(br#"{"pod":{"metadata":{"name":"p"}},"nodenames":["a"]}"#).unwrap();
    assert_eq!(args.candidates.len(), 1);
}

#[test]
fn bad_requests_name_the_problem() {
    let e = |b: &str| parse_args_all(b.as_bytes()).err().unwrap();
    assert!(matches!(e("{"), ProtocolError::Json(_)));
    assert_eq!(
        e(r#"{"Nodes":null,"NodeNames":["a"]}"#),
        ProtocolError::MissingPod
    );
    assert_eq!(
        e(r#"{"Pod":null,"Nodes":null,"NodeNames":["a"]}"#),
        ProtocolError::MissingPod
    );
    assert_eq!(
        e(r#"{"Pod":{},"Nodes":{"items":[]},"NodeNames":["a"]}"#),
        ProtocolError::BothNodeForms
    );
    assert_eq!(
        e(r#"{"Pod":{},"Nodes":null,"NodeNames":null}"#),
        ProtocolError::NoNodes
    );
    assert!(matches!(
        e(r#"{"Pod":{},"Nodes":{"items":[{"metadata":{"name":3}}]}}"#),
        ProtocolError::BadNode { index: 0, .. }
    ));
    assert!(matches!(
        e(r#"{"Pod":"x","NodeNames":[]}"#),
        ProtocolError::BadPod(_)
    ));
    assert!(matches!(e(r#"[1,2]"#), ProtocolError::Json(_)));
}

#[test]
fn neutral_pods_follow_the_shared_rule_on_the_request_summary() {
    use realload_common::objects::NeutralPod;
    let cases = [
        (
            r#"{"metadata":{"ownerReferences":[{"apiVersion":"apps/v1","kind":"DaemonSet","name":"d","uid":"u","controller":true}]}}"#,
            Some(NeutralPod::DaemonSet),
        ),
        (
            r#"{"metadata":{"ownerReferences":[{"apiVersion":"apps/v1","kind":"DaemonSet","name":"d","uid":"u"}]}}"#,
            None,
        ),
        (
            r#"{"metadata":{"annotations":{"realload.io/ignore":"true"}}}"#,
            Some(NeutralPod::Ignored),
        ),
        (
            r#"{"metadata":{"annotations":{"realload.io/ignore":"false"}}}"#,
            None,
        ),
    ];
    for (json, want) in cases {
        let summary: PodSummary = serde_json::from_str(json).unwrap();
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_str(json).unwrap();
        assert_eq!(summary.neutral(), want, "{json}");
        assert_eq!(NeutralPod::of(&pod), want, "the full Pod agrees: {json}");
    }
}

#[test]
fn prioritize_and_bind_shapes() {
    assert_eq!(
        prioritize_response([("a", 7), ("b", 0)].into_iter()),
        r#"[{"Host":"a","Score":7},{"Host":"b","Score":0}]"#
    );
    assert_eq!(prioritize_response(std::iter::empty()), "[]");
    // scores outside the table and names that need escapes
    assert_eq!(
        prioritize_response([("a\"b", -1), ("c", 11), ("d", 10)].into_iter()),
        r#"[{"Host":"a\"b","Score":-1},{"Host":"c","Score":11},{"Host":"d","Score":10}]"#
    );
    let bind = parse_bind(BIND.as_bytes()).unwrap();
    assert_eq!(bind.pod_name, "low-2");
    assert_eq!(bind.node, "fake-node-2");
    assert_eq!(bind_response(""), r#"{"Error":""}"#);
    assert_eq!(
        parse_bind(br#"{"PodName":"p"}"#).unwrap_err(),
        ProtocolError::BindField("PodNamespace")
    );
    let e: serde_json::Value = serde_json::from_str(&filter_error("not \"ok\"")).unwrap();
    assert_eq!(e["Error"], "not \"ok\"");
    assert_eq!(e["NodeNames"], serde_json::Value::Null);
}

#[test]
fn the_node_scanner_reads_what_serde_reads() {
    let original: serde_json::Value = serde_json::from_str(FILTER_NOCACHE).unwrap();
    for item in original["Nodes"]["items"].as_array().unwrap() {
        let mut item = item.clone();
        item["metadata"]["annotations"] = serde_json::json!({"realload.io/cpu-avg-5m": "0.5,2026-11-22T01:00:00Z", "x\"y": "a}b{c]"});
        item["spec"] = serde_json::json!({"taints": [{"key": "k\\", "effect": "NoSchedule"}], "n": [1, 2.5e3, null, true]});
        let text = serde_json::to_string_pretty(&item).unwrap();
        let fast = summarize_node(&text, &[]).unwrap();
        let slow: NodeSummary = serde_json::from_str(&text).unwrap();
        assert_eq!(fast.name, slow.metadata.name);
        let fast_annotations: BTreeMap<String, String> = fast
            .annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(fast_annotations, slow.metadata.annotations);
        assert_eq!(
            fast.cpu.as_deref(),
            slow.status.allocatable.get("cpu").map(String::as_str)
        );
        assert_eq!(
            fast.memory.as_deref(),
            slow.status.allocatable.get("memory").map(String::as_str)
        );
        assert!(fast.cpu.is_some());
    }
    assert!(
        summarize_node("{\"metadata\": {\"name\": 3}}", &[])
            .unwrap_err()
            .contains("metadata")
    );
    assert_eq!(summarize_node("{}", &[]).unwrap().name, "");
    let only = summarize_node(r#"{"metadata":{"name":"n","annotations":{"a":"1","b":"2"}},"status":{"allocatable":{"cpu":"2","pods":"110"}}}"#, &["b"]).unwrap();
    assert_eq!(only.annotations.len(), 1);
    assert_eq!(only.cpu.as_deref(), Some("2"));
    assert_eq!(only.memory, None);
}

/// The parts of a Node the extender reads in non-cache mode, as plain serde reads them: the
/// reference the hand-written node scanner is checked against.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NodeSummary {
    pub metadata: NodeMeta,
    pub status: NodeStatusSummary,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NodeMeta {
    pub name: String,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NodeStatusSummary {
    pub allocatable: BTreeMap<String, String>,
}
