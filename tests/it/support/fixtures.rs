//! Setups many tests share.

use outrigger::SidecarConfig;

use super::*;

/// The start of most API tests: the shared broker, a fresh one-partition
/// topic, and an in-process sidecar with one Kafka output binding `orders`
/// writing to it; `tweak` adjusts the sidecar's config (token, limits, app id).
pub async fn orders_setup(tweak: impl FnOnce(&mut SidecarConfig)) -> (Broker, String, TestSidecar) {
    let broker = Broker::start();
    let topic = unique("orders");
    broker.create_topic(&topic, 1);
    let sidecar = start_sidecar(
        &[kafka_component(
            "orders",
            &broker.addr(),
            &[("publishTopic", &topic)],
        )],
        tweak,
    )
    .await;
    (broker, topic, sidecar)
}
