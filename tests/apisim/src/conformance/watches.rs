//! Watches: streaming, resuming, expiry, streaming lists and timeouts.

use super::*;

/// The next watch event that is not a bookmark, named `TYPE name`.
async fn next_change<S>(stream: &mut S) -> String
where
    S: futures::Stream<Item = Result<WatchEvent<Node>, kube::Error>> + Unpin,
{
    loop {
        let event = tokio::time::timeout(std::time::Duration::from_secs(10), stream.try_next())
            .await
            .expect("a watch event within 10 s")
            .unwrap()
            .expect("the watch is still open");
        let name = |n: &Node| n.metadata.name.clone().unwrap_or_default();
        return match event {
            WatchEvent::Added(n) => format!("ADDED {}", name(&n)),
            WatchEvent::Modified(n) => format!("MODIFIED {}", name(&n)),
            WatchEvent::Deleted(n) => format!("DELETED {}", name(&n)),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => format!("ERROR {}", e.code),
        };
    }
}

pub async fn watch_streams_resumes_and_expires(b: &Backend) {
    let group = b.name("w");
    let selector = format!("group={group}");
    let (a, bn) = (b.name("a"), b.name("b"));
    b.create(node(&a, json!({"group": group}))).await;
    let nodes: Api<Node> = Api::all(b.client());
    let listed = nodes
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap();
    let rv = listed.metadata.resource_version.unwrap();

    let mut stream = nodes
        .watch(&WatchParams::default().labels(&selector).timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    b.create(node(&bn, json!({"group": group}))).await;
    nodes
        .patch(
            &a,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    let seen = [
        next_change(&mut stream).await,
        next_change(&mut stream).await,
    ];
    assert_eq!(seen, [format!("ADDED {bn}"), format!("MODIFIED {a}")]);

    // resuming from the list's version replays what happened since
    let mut replay = nodes
        .watch(&WatchParams::default().labels(&selector).timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    assert_eq!(next_change(&mut replay).await, format!("ADDED {bn}"));

    // after compaction the same version is too old: an ERROR event carrying 410 Expired
    if let Some(sim) = b.sim_only() {
        sim.compact();
        let mut expired = nodes
            .watch(&WatchParams::default().timeout(5), &rv)
            .await
            .unwrap()
            .boxed();
        match expired.try_next().await.unwrap().unwrap() {
            WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
            other => panic!("expected 410, got {other:?}"),
        }
    }

    // selector transitions: leaving the selection is DELETED, entering is ADDED
    let rv = nodes
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut filtered = nodes
        .watch(
            &WatchParams::default()
                .labels(&format!("{selector},x=y"))
                .timeout(5),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    nodes
        .patch(
            &a,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "z"}}})),
        )
        .await
        .unwrap();
    nodes
        .patch(
            &bn,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    let transitions = [
        next_change(&mut filtered).await,
        next_change(&mut filtered).await,
    ];
    assert_eq!(transitions, [format!("DELETED {a}"), format!("ADDED {bn}")]);
    for n in [&a, &bn] {
        nodes.delete(n, &DeleteParams::default()).await.unwrap();
    }
}

pub async fn streaming_lists_end_with_a_bookmark_and_watches_time_out(b: &Backend) {
    let group = b.name("s");
    let selector = format!("group={group}");
    for n in ["a", "b"] {
        b.create(node(&b.name(n), json!({"group": group}))).await;
    }
    let nodes: Api<Node> = Api::all(b.client());

    // streaming list: initial ADDED events, then a bookmark marking their end. Only the
    // simulator here: kube-apiserver serves it only with etcd >= 3.4.31's watch progress
    // requests (the bundled etcd 3.4 answers 500), and realload lists, then watches.
    if b.sim_only().is_some() {
        let mut stream = nodes
            .watch(
                &WatchParams::streaming_lists().labels(&selector).timeout(5),
                "0",
            )
            .await
            .unwrap()
            .boxed();
        let mut added = 0;
        loop {
            match stream.try_next().await.unwrap().unwrap() {
                WatchEvent::Added(_) => added += 1,
                WatchEvent::Bookmark(bm) => {
                    assert_eq!(
                        bm.metadata
                            .annotations
                            .get("k8s.io/initial-events-end")
                            .map(String::as_str),
                        Some("true")
                    );
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(added, 2);
    }

    // timeoutSeconds ends the stream on the server side
    let rv = nodes
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut short = nodes
        .watch(
            &WatchParams::default()
                .labels(&selector)
                .timeout(1)
                .disable_bookmarks(),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while short.try_next().await.ok().flatten().is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the watch did not end after its timeout");
    for n in ["a", "b"] {
        nodes
            .delete(&b.name(n), &DeleteParams::default())
            .await
            .unwrap();
    }
}
