//! A lane's consumer groups on a real Apache Kafka broker (`scripts/services.sh kafka`): the
//! teardown deletes the lane's group `<group>.lane-<id>` through the guard, leaves baseline's
//! group and other lanes' groups alone, and a plan altered to name baseline's group is refused.

mod common;

use common::{lane, unique};
use lane_core::data::DataSpec;
use lane_data::DataError;
use lane_data::kafka::Kafka;
use lane_data::kafka::wire::Conn;
use lane_data::kafka::wire::groups::GROUP_ID_NOT_FOUND;
use lane_data::teardown;

/// The broker's bootstrap `host:port`, started when needed (the test fails when it cannot be).
fn bootstrap() -> String {
    common::kafka_bootstrap().to_owned()
}

fn specs(url: &str, topic: &str, group: &str) -> Vec<DataSpec> {
    lane_core::manifest::Manifest::parse(
        std::path::Path::new("lane.toml"),
        &format!(
            "app = \"a\"\nproc = \"b\"\n[run]\ncommand = \"x\"\n[data.events]\nkind = \"kafka\"\n\
             url = \"{url}\"\nenv = \"K\"\ntopics = {{ T = \"{topic}\" }}\ngroups = {{ G = \"{group}\" }}\n"
        ),
    )
    .unwrap()
    .data
}

/// Deletes `group` outright (the single test broker coordinates every group): whether it existed.
async fn delete_raw(bootstrap: &str, group: &str) -> bool {
    let mut c = Conn::connect(bootstrap).await.unwrap();
    let r = c.delete_groups(&[group.to_owned()]).await.unwrap();
    match r[0].1 {
        0 => true,
        GROUP_ID_NOT_FOUND => false,
        code => panic!("DeleteGroups `{group}`: {code}"),
    }
}

#[test]
fn teardown_deletes_the_lanes_consumer_group_and_only_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let bootstrap = bootstrap();
        let url = format!("kafka://{bootstrap}");
        let mut k = Kafka::connect(&url).await.unwrap();
        let topic = unique("kg_");
        let base_group = unique("kgroup_");
        k.create_topic(&topic, 1, 1, &[]).await.unwrap();
        let (l, other) = (lane("kg-"), lane("kgo-"));
        let own = format!("{base_group}.lane-{l}");
        let others = format!("{base_group}.lane-{other}");
        for g in [&base_group, &own, &others] {
            k.commit_group_offset(g, &topic, 0, 0).await.unwrap();
        }

        let specs = specs(&url, &topic, &base_group);
        let plan = teardown::plan(&l, &specs, &[]).unwrap();
        assert!(
            plan.to_string().contains(&format!(
                "events: delete Kafka consumer group `{own}` on {url}"
            )),
            "{plan}"
        );
        // A plan altered to name baseline's group, or another lane's, is refused when run.
        for victim in [&base_group, &others] {
            let mut bad = plan.clone();
            for a in &mut bad.actions {
                if let teardown::Action::DeleteGroup { group, .. } = a {
                    *group = victim.clone();
                }
            }
            let err = teardown::execute(&bad, &specs).await.unwrap_err();
            assert!(matches!(err, DataError::Guard(_)), "{victim}: {err}");
        }
        let err = k
            .delete_lane_group(&base_group, &l, &base_group)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("nothing was deleted"), "{err}");

        let done = teardown::execute(&plan, &specs).await.unwrap();
        let group_done: Vec<bool> = done
            .iter()
            .filter(|d| matches!(d.action, teardown::Action::DeleteGroup { .. }))
            .map(|d| d.removed)
            .collect();
        assert_eq!(group_done, [true]);
        // Gone; a second teardown finds nothing to delete.
        assert!(!k.delete_lane_group(&base_group, &l, &own).await.unwrap());
        let again = teardown::execute(&plan, &specs).await.unwrap();
        assert!(again.iter().all(|d| !d.removed));

        // Baseline's group and the other lane's were kept (deleting them now finds them).
        assert!(
            delete_raw(&bootstrap, &base_group).await,
            "baseline's group kept"
        );
        assert!(
            k.delete_lane_group(&base_group, &other, &others)
                .await
                .unwrap()
        );
        assert!(!delete_raw(&bootstrap, &own).await);

        // The test's baseline topic (the guard is for lanes; tests remove their own).
        let client = rskafka::client::ClientBuilder::new(k.brokers().to_vec())
            .build()
            .await
            .unwrap();
        client
            .controller_client()
            .unwrap()
            .delete_topic(&topic, 30_000)
            .await
            .unwrap();
    });
}

#[test]
fn teardown_with_a_live_member_in_the_lanes_group_is_a_clear_error_and_deletes_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let bootstrap = bootstrap();
        let url = format!("kafka://{bootstrap}");
        let mut k = Kafka::connect(&url).await.unwrap();
        let topic = unique("kgm_");
        let base_group = unique("kgmgroup_");
        k.create_topic(&topic, 1, 1, &[]).await.unwrap();
        let l = lane("kgm-");
        let own_topic = k
            .create_lane_topics(&l, std::slice::from_ref(&topic))
            .await
            .unwrap()[0]
            .topic
            .clone();
        let own = format!("{base_group}.lane-{l}");
        let (member, id) = common::kafka_member::join(&bootstrap, &own, &own_topic).await;

        let specs = specs(&url, &topic, &base_group);
        let plan = teardown::plan(&l, &specs, &[]).unwrap();
        let err = teardown::execute(&plan, &specs).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("consumer group `{own}`")) && text.contains("still has members"),
            "{text}"
        );
        // Nothing was deleted: the lane's topic and its group are there.
        assert!(k.topic_exists(&own_topic).await.unwrap());
        let mut c = Conn::connect(&bootstrap).await.unwrap();
        let r = c.delete_groups(std::slice::from_ref(&own)).await.unwrap();
        assert_eq!(r[0].1, lane_data::kafka::wire::groups::NON_EMPTY_GROUP);

        // Once the member has left, the teardown removes both.
        common::kafka_member::leave(member, &own, &id).await;
        let done = teardown::execute(&plan, &specs).await.unwrap();
        assert!(done.iter().all(|d| d.removed), "{done:?}");
        assert!(!k.topic_exists(&own_topic).await.unwrap());
        assert!(!delete_raw(&bootstrap, &own).await);

        let client = rskafka::client::ClientBuilder::new(k.brokers().to_vec())
            .build()
            .await
            .unwrap();
        client
            .controller_client()
            .unwrap()
            .delete_topic(&topic, 30_000)
            .await
            .unwrap();
    });
}
