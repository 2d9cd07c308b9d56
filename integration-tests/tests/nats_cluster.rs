//! The platform on a three-node NATS JetStream cluster: three `nats-server` processes on
//! loopback ports, the event stream replicated on all three (R3), two projector
//! instances sharing the partitions. One node is SIGKILLed mid-load and restarted:
//! every accepted command ends up in the read models, none twice (the fault suite's
//! invariants).

use std::time::Duration;

use crm_eventstore::testing::TestDatabase;
use crm_integration_tests::faults::{NatsCluster, Rig};
use crm_integration_tests::Platform;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_three_killed_mid_load_loses_nothing() {
    let mut cluster = NatsCluster::start(3).await;
    let platform = Platform::new().await;
    let read = TestDatabase::create().await;
    let mut rig = Rig::on(&platform, &read);
    rig.nats_url = cluster.urls();
    rig.relay_env = vec![("CRM_STREAM_REPLICAS", "3".into())];
    rig.commands = 8_000;
    let _command = rig.command_service().await;
    let _relay = rig.relay().await;
    let _a = rig.projector().await;
    let _b = rig.projector().await;
    let mut load = rig.load(crm_eventstore::conformance::seed());

    // Wait until the stream exists with three replicas, then kill the node that leads it.
    let js = async_nats::jetstream::new(
        crm_bus::connect::connect(&cluster.urls(), &Default::default())
            .await
            .unwrap(),
    );
    let leader = loop {
        if let Ok(mut s) = js.get_stream(&rig.stream).await {
            let info = s.info().await.unwrap();
            assert_eq!(info.config.num_replicas, 3, "the stream is R3");
            if let Some(leader) = info.cluster.as_ref().and_then(|c| c.leader.clone()) {
                let replicas = info.cluster.as_ref().map_or(0, |c| c.replicas.len());
                if replicas == 2 && info.state.messages > 500 {
                    break leader;
                }
            }
        }
        assert!(load.is_running(), "the load ended before the kill");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let victim = cluster
        .nodes
        .iter()
        .position(|n| n.name == leader)
        .expect("the leader is one of ours");
    cluster.nodes[victim].kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.nodes[victim].start().await;
    assert!(load.is_running(), "the load ended while the node was down");

    let (summary, _) = rig.finish("nats-cluster", load).await;
    let mut s = js.get_stream(&rig.stream).await.unwrap();
    let cluster_info = s.info().await.unwrap().cluster.clone().unwrap();
    println!(
        "CLUSTER: stream leader {leader} SIGKILLed mid-load and restarted; new leader {:?}, replicas {:?}; {} commands resent",
        cluster_info.leader,
        cluster_info
            .replicas
            .iter()
            .map(|r| format!("{} current={}", r.name, r.current))
            .collect::<Vec<_>>(),
        summary["retries"]
    );
}
