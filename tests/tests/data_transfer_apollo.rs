//! Export and import of an Apollo binding (`lane_data::transfer`) against the Apollo Open API
//! test double (`lane_tests::apollo`): a lane's items (per namespace, with comments) exported and
//! imported into another lane's cluster are identical and published, while the item the lane's
//! data-source rewriting owns keeps the importing lane's own address; an import stopped before
//! the publish (its future dropped, as a killed process) leaves the released configuration as it
//! was and the next import resets the unpublished edits; a failed import resets its edits; an
//! unchanged namespace is not published again; the wrong binding, kind or cluster and a lane
//! without a cluster are clear errors.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::task::{Context, Poll};

use lane_core::LaneId;
use lane_core::data::{ApolloOptions, DataOptions, DataSpec, RedisMode};
use lane_data::DataError;
use lane_data::apollo::{self, Apollo};
use lane_data::transfer::{self, Cancel, Progress, Target, format};
use lane_tests::apollo::{APPLICATION, ApolloDouble, Options};
use tokio::io::{AsyncRead, ReadBuf};

const TOKEN: &str = "5b1c8a0f3e2d4c6b9a7e1f0d2c4b6a8e9f1d3c5b";
const FLAGS: &str = "feature-flags";
/// The Apollo key the binding's rewriting owns.
const OWNED: &str = "spring.redis.url";

fn double() -> ApolloDouble {
    ApolloDouble::start(Options {
        tokens: HashMap::from([(TOKEN.to_owned(), vec!["cart".to_owned()])]),
        apps: vec!["cart".into()],
        users: vec!["apollo".into(), "lane-bot".into()],
        namespaces: vec![FLAGS.into()],
        ..Options::default()
    })
    .expect("the double starts")
}

fn spec(url: &str) -> DataSpec {
    DataSpec {
        name: "config".into(),
        address: url.into(),
        env: "APOLLO_META".into(),
        options: DataOptions::Apollo(ApolloOptions {
            app: "cart".into(),
            cluster_env: "APOLLO_CLUSTER".into(),
            env: "DEV".into(),
            namespace: APPLICATION.into(),
            operator: "lane-bot".into(),
            token_env: "CART_APOLLO_TOKEN".into(),
            items: BTreeMap::from([(OWNED.to_owned(), "REDIS_URL".to_owned())]),
            token: Some(TOKEN.into()),
        }),
    }
}

fn target(spec: &DataSpec, lane: &LaneId) -> Vec<Target> {
    vec![Target {
        spec: spec.clone(),
        target: lane_core::data::apollo_cluster(lane),
    }]
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn no_progress(_: &Progress) {}

/// A reader that gives `data`, then never answers again.
struct Stall {
    data: Vec<u8>,
    pos: usize,
}

impl AsyncRead for Stall {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos >= self.data.len() {
            return Poll::Pending;
        }
        let n = buf.remaining().min(self.data.len() - self.pos);
        let pos = self.pos;
        buf.put_slice(&self.data[pos..pos + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// Where the file's end frame (its last) starts.
fn end_frame(file: &[u8]) -> usize {
    let mut at = 10;
    let mut last = at;
    while at < file.len() {
        last = at;
        let len = u32::from_be_bytes(file[at + 1..at + 5].try_into().unwrap()) as usize;
        at += 9 + len;
    }
    assert_eq!(file[last], format::TAG_END);
    last
}

struct Lanes {
    rt: tokio::runtime::Runtime,
    d: ApolloDouble,
    spec: DataSpec,
    client: Apollo,
}

impl Lanes {
    fn new() -> Lanes {
        let d = double();
        let spec = spec(&d.url());
        let client = Apollo::for_binding(&spec).unwrap();
        Lanes {
            rt: tokio::runtime::Runtime::new().unwrap(),
            d,
            spec,
            client,
        }
    }

    /// Provisions `lane`'s cluster with its own owned item, then writes and publishes `items`
    /// (namespace, key, value, comment).
    fn lane(&self, lane: &LaneId, redis: &str, items: &[(&str, &str, &str, &str)]) {
        let cluster = lane_core::data::apollo_cluster(lane);
        self.rt
            .block_on(apollo::provision(
                &self.spec,
                lane,
                &[(OWNED.to_owned(), redis.to_owned())],
            ))
            .unwrap();
        for (ns, k, v, c) in items {
            self.rt
                .block_on(
                    self.client
                        .put_item("DEV", "cart", &cluster, ns, k, v, c, "lane-bot"),
                )
                .unwrap();
        }
        for ns in [APPLICATION, FLAGS] {
            self.rt
                .block_on(
                    self.client
                        .publish("DEV", "cart", &cluster, ns, "t", "c", "lane-bot"),
                )
                .unwrap();
        }
    }

    fn items(&self, lane: &LaneId, ns: &str) -> BTreeMap<String, String> {
        self.d
            .items("DEV", "cart", &lane_core::data::apollo_cluster(lane), ns)
            .unwrap()
    }

    fn released(&self, lane: &LaneId, ns: &str) -> BTreeMap<String, String> {
        self.d
            .latest_release("DEV", "cart", &lane_core::data::apollo_cluster(lane), ns)
            .unwrap_or_default()
    }

    fn releases(&self, lane: &LaneId) -> usize {
        let c = lane_core::data::apollo_cluster(lane);
        [APPLICATION, FLAGS]
            .iter()
            .map(|ns| self.d.release_count("DEV", "cart", &c, ns))
            .sum()
    }

    fn export(&self, lane: &LaneId) -> Vec<u8> {
        let (file, report) = self
            .rt
            .block_on(transfer::export(
                lane,
                &target(&self.spec, lane),
                Vec::new(),
                &no_progress,
                &Cancel::new(),
            ))
            .unwrap();
        assert_eq!(report.bindings[0].kind, "apollo");
        file
    }

    fn import(
        &self,
        lane: &LaneId,
        targets: &[Target],
        file: &[u8],
        only: Option<&str>,
    ) -> Result<transfer::Report, DataError> {
        self.rt.block_on(transfer::import(
            lane,
            targets,
            file,
            only,
            file.len() as u64,
            &no_progress,
            &Cancel::new(),
        ))
    }
}

#[test]
fn apollo_export_import_moves_items_and_publish_is_the_swap() {
    let l = Lanes::new();
    let (a, b): (LaneId, LaneId) = ("feat-a".parse().unwrap(), "feat-b".parse().unwrap());
    l.lane(
        &a,
        "redis://h/4",
        &[
            (APPLICATION, "k1", "v1", "the first"),
            (APPLICATION, "k2", "two\nlines = and ünïcode", ""),
            (FLAGS, "f1", "on", "a flag"),
        ],
    );
    l.lane(
        &b,
        "redis://h/5",
        &[(APPLICATION, "old", "1", ""), (FLAGS, "f0", "x", "")],
    );
    let b_app = map(&[("old", "1"), (OWNED, "redis://h/5")]);
    let b_flags = map(&[("f0", "x")]);
    assert_eq!(l.released(&b, APPLICATION), b_app);
    let tb = target(&l.spec, &b);

    let file = l.export(&a);
    let text = String::from_utf8_lossy(&file);
    assert!(
        !text.contains("redis://h/4"),
        "the owned item is not exported"
    );

    // Stopped before the publish (the end frame never comes): the edits are made, unpublished;
    // the released configuration is as it was.
    let stall = Stall {
        data: file[..end_frame(&file)].to_vec(),
        pos: 0,
    };
    let cancel = Cancel::new();
    let run = transfer::import(
        &b,
        &tb,
        stall,
        None,
        file.len() as u64,
        &no_progress,
        &cancel,
    );
    let stopped =
        l.rt.block_on(async { tokio::time::timeout(std::time::Duration::from_secs(2), run).await });
    assert!(stopped.is_err(), "the import still waits");
    assert_eq!(
        l.items(&b, APPLICATION),
        map(&[
            ("k1", "v1"),
            ("k2", "two\nlines = and ünïcode"),
            (OWNED, "redis://h/5")
        ]),
        "staged as edits"
    );
    assert_eq!(l.released(&b, APPLICATION), b_app);
    assert_eq!(l.released(&b, FLAGS), b_flags);

    // A file that turns out corrupt after the edits: they are reset to the release.
    let mut corrupt = file.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let e = l.import(&b, &tb, &corrupt, None).unwrap_err();
    assert!(e.to_string().contains("corrupt"), "{e}");
    assert_eq!(l.items(&b, APPLICATION), b_app, "edits reset");
    assert_eq!(l.items(&b, FLAGS), b_flags);
    assert_eq!(l.released(&b, APPLICATION), b_app);

    // The import: b's items equal a's, with their comments, published; b's owned item is b's.
    let releases = l.releases(&b);
    let report = l.import(&b, &tb, &file, None).unwrap();
    assert_eq!(
        (report.bindings[0].items, report.bindings[0].objects),
        (3, 2)
    );
    let want_app = map(&[
        ("k1", "v1"),
        ("k2", "two\nlines = and ünïcode"),
        (OWNED, "redis://h/5"),
    ]);
    assert_eq!(l.items(&b, APPLICATION), want_app);
    assert_eq!(l.released(&b, APPLICATION), want_app);
    assert_eq!(l.items(&b, FLAGS), map(&[("f1", "on")]));
    assert_eq!(l.released(&b, FLAGS), map(&[("f1", "on")]));
    let comments = |lane: &LaneId, ns: &str| {
        l.d.items_with_comments("DEV", "cart", &lane_core::data::apollo_cluster(lane), ns)
            .unwrap()
            .into_iter()
            .filter(|(k, _)| k != OWNED)
            .collect::<BTreeMap<_, _>>()
    };
    for ns in [APPLICATION, FLAGS] {
        assert_eq!(comments(&b, ns), comments(&a, ns), "{ns}");
    }
    assert_eq!(l.releases(&b), releases + 2);
    // a is untouched, baseline's cluster too.
    assert_eq!(l.released(&a, APPLICATION)[OWNED], "redis://h/4");
    assert_eq!(
        l.d.items("DEV", "cart", "default", APPLICATION),
        Some(BTreeMap::new())
    );

    // The same file again changes nothing: nothing is published.
    l.import(&b, &tb, &file, None).unwrap();
    assert_eq!(l.releases(&b), releases + 2);

    // A person's unpublished edit (or a killed import's) is reset by the next import.
    l.rt.block_on(l.client.put_item(
        "DEV",
        "cart",
        "lane-feat-b",
        FLAGS,
        "draft",
        "1",
        "",
        "lane-bot",
    ))
    .unwrap();
    l.import(&b, &tb, &file, Some("config")).unwrap();
    assert_eq!(l.items(&b, FLAGS), map(&[("f1", "on")]));

    // Bad input: a binding the file does not hold, the wrong kind, not the lane's cluster, a
    // lane without a cluster.
    let e = l.import(&b, &tb, &file, Some("nope")).unwrap_err();
    assert!(
        e.to_string()
            .contains("the file holds no binding `nope` (it holds `config` (apollo))"),
        "{e}"
    );
    let redis = DataSpec {
        name: "config".into(),
        address: "redis://127.0.0.1:1/0".into(),
        env: "R".into(),
        options: DataOptions::Redis {
            index: 0,
            mode: RedisMode::Database { first: 1, last: 2 },
            copy: None,
        },
    };
    let e = l
        .import(
            &b,
            &[Target {
                spec: redis,
                target: "1".into(),
            }],
            &file,
            None,
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "binding `config` is apollo in the file and redis in the lane"
    );
    for bad in ["default", "lane-feat-a"] {
        let mut t = tb.clone();
        t[0].target = bad.into();
        let e = l.import(&b, &t, &file, None).unwrap_err();
        assert!(matches!(e, DataError::Guard(_)), "{bad}: {e}");
        let e =
            l.rt.block_on(transfer::export(
                &b,
                &t,
                Vec::new(),
                &no_progress,
                &Cancel::new(),
            ))
            .unwrap_err();
        assert!(matches!(e, DataError::Guard(_)), "{bad}: {e}");
    }
    let c: LaneId = "feat-c".parse().unwrap();
    let e = l.import(&c, &target(&l.spec, &c), &file, None).unwrap_err();
    assert!(
        e.to_string()
            .contains("lane `feat-c` has no Apollo cluster `lane-feat-c` of app `cart` in DEV"),
        "{e}"
    );
    assert_eq!(l.released(&a, APPLICATION)[OWNED], "redis://h/4");
}
