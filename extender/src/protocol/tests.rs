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
        &[("fake-node-1", "realload: node cpu-avg-5m above 0.85")],
    );
    let parsed: serde_json::Value = serde_json::from_str(&response).unwrap();
    assert_eq!(parsed["NodeNames"], serde_json::Value::Null);
    assert_eq!(parsed["Error"], "");
    assert_eq!(
        parsed["FailedNodes"]["fake-node-1"],
        "realload: node cpu-avg-5m above 0.85"
    );
    // the surviving Node is the request's bytes, unchanged
    let original: serde_json::Value = serde_json::from_str(FILTER_NOCACHE).unwrap();
    assert_eq!(parsed["Nodes"]["items"][0], original["Nodes"]["items"][1]);
    assert!(response.contains(std::str::from_utf8(nodes[1].0).unwrap()));
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
fn node_names_split_as_serde_reads_them() {
    let names = |body: &str| -> Result<Vec<String>, ProtocolError> {
        let body = format!(r#"{{"Pod":{{}},"NodeNames":{body}}}"#);
        let args = parse_args_all(body.as_bytes())?;
        let Candidates::Names(n) = args.candidates else {
            panic!("names expected")
        };
        Ok(n.into_iter().map(|c| c.into_owned()).collect())
    };
    for (body, want) in [
        (r#"[]"#, vec![]),
        (r#"[ ]"#, vec![]),
        (r#"["a"]"#, vec!["a"]),
        (
            r#"["ip-10-0-0-1.ec2.internal","b"]"#,
            vec!["ip-10-0-0-1.ec2.internal", "b"],
        ),
        ("[\n \"a\" ,\t\"b\"\n]", vec!["a", "b"]),
        (r#"["a\"b","c\\"]"#, vec!["a\"b", "c\\"]),
        (r#"["\u006eode","é"]"#, vec!["node", "é"]),
        (r#"["","x"]"#, vec!["", "x"]),
    ] {
        let got = names(body).unwrap_or_else(|e| panic!("{body}: {e}"));
        let serde: Vec<String> = serde_json::from_str(body).unwrap();
        assert_eq!(got, want, "{body}");
        assert_eq!(got, serde, "{body}: serde reads the same");
    }
    // Names without escapes are borrowed from the body.
    let body = br#"{"Pod":{},"NodeNames":["a","b\u0063"]}"#;
    let args = parse_args_all(body).unwrap();
    let Candidates::Names(n) = &args.candidates else {
        panic!("names expected")
    };
    assert!(matches!(n[0], std::borrow::Cow::Borrowed("a")));
    assert!(matches!(n[1], std::borrow::Cow::Owned(_)));
    for bad in [r#"{"a":"b"}"#, r#""a""#, "3"] {
        let e = names(bad).err().unwrap().to_string();
        assert!(e.contains("NodeNames"), "{bad}: {e}");
    }
    for bad in [r#"[1]"#, r#"["a",null]"#, r#"[["a"]]"#] {
        assert_eq!(
            names(bad).err(),
            Some(ProtocolError::Json(
                "NodeNames is not an array of strings".into()
            )),
            "{bad}"
        );
    }
    // Malformed JSON is serde's to report.
    for bad in [r#"["a",]"#, r#"["a""#, "[\"a\u{1}\"]"] {
        assert!(matches!(names(bad), Err(ProtocolError::Json(_))), "{bad}");
    }
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
        prioritize_response([("a", true, 7), ("b", false, 0)].into_iter()),
        r#"[{"Host":"a","Score":7},{"Host":"b","Score":0}]"#
    );
    assert_eq!(prioritize_response(std::iter::empty()), "[]");
    // scores outside the table and names that need escapes
    assert_eq!(
        prioritize_response([("a\"b", false, -1), ("c", true, 11), ("d", false, 10)].into_iter()),
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
fn nodes_are_read_as_serde_reads_them_and_kept_byte_for_byte() {
    let original: serde_json::Value = serde_json::from_str(FILTER_NOCACHE).unwrap();
    let mut items = Vec::new();
    for item in original["Nodes"]["items"].as_array().unwrap() {
        let mut item = item.clone();
        item["metadata"]["annotations"] = serde_json::json!({"realload.io/cpu-avg-5m": "0.5,2026-11-22T01:00:00Z", "x\"y": "a}b{c]"});
        item["spec"] = serde_json::json!({"taints": [{"key": "k\\", "effect": "NoSchedule"}], "n": [1, 2.5e3, null, true]});
        items.push(serde_json::to_string_pretty(&item).unwrap());
    }
    let body = format!(
        "{{\"Pod\":{{}},\"Nodes\":{{\"metadata\":{{}},\"items\":[\n{}\n]}},\"NodeNames\":null}}",
        items.join(" ,\n")
    );
    let args = parse_args_all(body.as_bytes()).unwrap();
    let Candidates::Nodes(nodes) = &args.candidates else {
        panic!("Nodes expected")
    };
    assert_eq!(nodes.len(), items.len());
    for ((raw, fast), text) in nodes.iter().zip(&items) {
        assert_eq!(*raw, text.as_bytes(), "each Node's exact bytes");
        let slow: NodeSummary = serde_json::from_str(text).unwrap();
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
        assert!(
            matches!(fast.name, std::borrow::Cow::Borrowed(_)),
            "borrowed"
        );
    }
    let node = |item: &str, keys: &[&str]| {
        let body = format!(r#"{{"Pod":{{}},"Nodes":{{"items":[{item}]}}}}"#);
        parse_args(body.as_bytes(), keys).map(|a| match a.candidates {
            Candidates::Nodes(n) => n[0].1.clone().into_owned(),
            Candidates::Names(_) => panic!("Nodes expected"),
        })
    };
    assert!(matches!(
        node(r#"{"metadata": {"name": 3}}"#, &[]),
        Err(ProtocolError::BadNode { index: 0, .. })
    ));
    assert_eq!(node("{}", &[]).unwrap().name, "");
    let only = node(
        r#"{"metadata":{"name":"n","annotations":{"a":"1","b":"2"}},"status":{"allocatable":{"cpu":"2","pods":"110"}}}"#,
        &["b"],
    )
    .unwrap();
    assert_eq!(only.annotations.len(), 1);
    assert_eq!(only.cpu.as_deref(), Some("2"));
    assert_eq!(only.memory, None);
}

/// The parts of a Node the extender reads in non-cache mode, as plain serde reads them: the
/// reference the request reader is checked against.
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

mod envelope_matches_serde {
    //! The envelope reader against serde on generated requests: same names and Pod when both
    //! accept, and an error whenever serde has one.
    use super::*;
    use proptest::prelude::*;

    #[derive(Deserialize)]
    struct Reference<'a> {
        #[serde(rename = "Pod", alias = "pod", borrow, default)]
        pod: Option<&'a RawValue>,
        #[serde(rename = "Nodes", alias = "nodes", default)]
        nodes: Option<serde_json::Value>,
        #[serde(
            rename = "NodeNames",
            alias = "nodenames",
            alias = "nodeNames",
            default
        )]
        node_names: Option<Vec<String>>,
    }

    fn ws() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["", " ", "\n", "\t ", "\r\n"])
    }

    fn element() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            r#""a""#,
            r#""ip-10-100-19-136.ec2.internal""#,
            r#""é""#,
            r#""a\"b""#,
            r#""\u0041""#,
            r#""x\\""#,
            "\"bad\u{1}\"",
            r#""\x""#,
            r#""""#,
            "1",
            "null",
            r#"["a"]"#,
        ])
    }

    fn names() -> impl Strategy<Value = String> {
        (
            prop::collection::vec((element(), ws(), ws()), 0..5),
            prop::sample::select(vec![",", ",", ",", "", ",,"]),
            any::<bool>(),
        )
            .prop_map(|(items, sep, close)| {
                let inner: Vec<String> =
                    items.iter().map(|(e, a, b)| format!("{a}{e}{b}")).collect();
                format!("[{}{}", inner.join(sep), if close { "]" } else { "" })
            })
    }

    fn member() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => (prop::sample::select(vec!["Pod", "pod"]), ws()).prop_map(|(k, w)| format!(
                r#""{k}"{w}:{w}{{"metadata":{{"name":"p"}}}}"#
            )),
            4 => (
                prop::sample::select(vec!["NodeNames", "nodenames", "nodeNames"]),
                names(),
                ws()
            )
                .prop_map(|(k, v, w)| format!(r#""{k}"{w}:{w}{v}"#)),
            1 => Just(r#""NodeNames":null"#.to_string()),
            1 => Just(r#""Nodes":null"#.to_string()),
            1 => Just(r#""Nodes":{"items":[]}"#.to_string()),
            1 => Just(r#""Other":[1,{"x":"y"}]"#.to_string()),
            1 => Just(r#""Pod":"#.to_string()),
        ]
    }

    fn envelope() -> impl Strategy<Value = String> {
        (
            prop::collection::vec((member(), ws()), 0..4),
            ws(),
            prop::sample::select(vec!["", "", "", " x", "}", ","]),
        )
            .prop_map(|(members, w, tail)| {
                let inner: Vec<String> = members.iter().map(|(m, w)| format!("{m}{w}")).collect();
                format!("{w}{{{w}{}}}{w}{tail}", inner.join(","))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn same_answers_as_serde(body in envelope()) {
            let reference: Result<Reference<'_>, _> = serde_json::from_slice(body.as_bytes());
            let ours = parse_envelope(body.as_bytes(), &[]);
            match (reference, ours) {
                (Ok(r), Ok(o)) => {
                    prop_assert_eq!(r.pod.map(|p| p.get()), o.pod.map(|p| p.get()), "{}", body);
                    let names: Option<Vec<String>> = o
                        .node_names
                        .map(|n| n.into_iter().map(|c| c.into_owned()).collect());
                    prop_assert_eq!(r.node_names, names, "{}", body);
                    prop_assert_eq!(r.nodes.is_some(), o.nodes.is_some(), "{}", body);
                }
                (Err(_), Err(_)) => {}
                (r, o) => prop_assert!(
                    false,
                    "{}: serde {:?}, ours {:?}",
                    body,
                    r.err(),
                    o.err()
                ),
            }
        }
    }
}

#[test]
fn a_node_named_twice_is_one_failed_node() {
    let mut out = String::new();
    push_failed(&mut out, &[("a", "hot"), ("b", "hot"), ("a", "hot")]);
    assert_eq!(out, r#"{"a":"hot","b":"hot"}"#);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_object().unwrap().len(), 2);
}
