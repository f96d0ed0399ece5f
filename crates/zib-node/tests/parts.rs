//! `GET /v1/upload/{blob}/parts`: what a resuming client learns, and who may ask.

mod common;

use axum::http::StatusCode;
use common::*;
use zib_proto::api::UploadParts;
use zib_proto::node_rpc::CapabilityOp;
use zib_proto::BlobId;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parts_listing_tells_a_resuming_client_what_is_held() {
    within(async {
        let cluster = Cluster::start(3).await;
        let original = bytes_of(20_000, 9);
        let blob = BlobId::new_random();
        let node = cluster.nodes[0].node_id.clone();
        let part_token = |n: u32| {
            let mut c = claims(CapabilityOp::Part, &node, blob, 10_000);
            c.part = Some(n);
            c.offset = Some(u64::from(n - 1) * 10_000);
            cluster.token(&c)
        };
        let mut complete_claims = claims(CapabilityOp::Complete, &node, blob, 20_000);
        complete_claims.parts = Some(2);
        let complete_token = cluster.token(&complete_claims);
        let list = |token: Option<String>| {
            let mut req = cluster
                .http
                .get(cluster.url(0, &format!("/v1/upload/{blob}/parts")));
            if let Some(token) = token {
                req = req.query(&[("token", token)]);
            }
            req.send()
        };

        // Only the registration's holder may ask: no token, or a part token, is refused.
        let (status, _) = error_of(list(None).await.unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, err) = error_of(list(Some(part_token(1))).await.unwrap()).await;
        assert_eq!(
            (status, err.code.as_str()),
            (StatusCode::FORBIDDEN, "wrong_operation")
        );
        let other = cluster.token(&{
            let mut c = claims(CapabilityOp::Complete, &node, BlobId::new_random(), 1);
            c.parts = Some(1);
            c
        });
        let (status, err) = error_of(list(Some(other)).await.unwrap()).await;
        assert_eq!(
            (status, err.code.as_str()),
            (StatusCode::FORBIDDEN, "wrong_blob")
        );

        let held: UploadParts = list(Some(complete_token.clone()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!((held.state.as_str(), held.parts.len()), ("receiving", 0));

        let body = original[10_000..].to_vec();
        let response = cluster
            .put(
                0,
                &format!("/v1/upload/{blob}/parts/2"),
                &part_token(2),
                body,
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let held: UploadParts = list(Some(complete_token.clone()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(held.state, "receiving");
        assert_eq!(
            held.parts
                .iter()
                .map(|p| (p.part_number, p.size))
                .collect::<Vec<_>>(),
            vec![(2, 10_000)]
        );

        // Listing spent nothing: the same complete token still completes.
        let body = original[..10_000].to_vec();
        let response = cluster
            .put(
                0,
                &format!("/v1/upload/{blob}/parts/1"),
                &part_token(1),
                body,
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let response = cluster
            .http
            .post(cluster.url(0, &format!("/v1/upload/{blob}/complete")))
            .query(&[("token", &complete_token)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let held: UploadParts = list(Some(complete_token))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!((held.state.as_str(), held.parts.len()), ("distributed", 0));

        // A single upload's own token lists it too.
        let single = BlobId::new_random();
        let token = cluster.upload_token(0, single, 5);
        let listed = || async {
            cluster
                .http
                .get(cluster.url(0, &format!("/v1/upload/{single}/parts")))
                .query(&[("token", &token)])
                .send()
                .await
                .unwrap()
                .json::<UploadParts>()
                .await
                .unwrap()
        };
        assert_eq!(listed().await.state, "receiving");
        // Erasure-coded as it arrived, nothing of it stored whole here: a client
        // whose answer was lost still learns it is distributed.
        let response = cluster
            .put(
                0,
                &format!("/v1/upload/{single}"),
                &token,
                b"12345".to_vec(),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(listed().await.state, "distributed");
        cluster.stop().await;
    })
    .await
}
