//! The compute job lifecycle after its claim, on a real SQLite file: leases that
//! renew and lapse, outputs then done with its one event, retries and permanent
//! failures, and the cancel cascades (encode cancelled, file superseded or deleted).

use super::*;

#[tokio::test]
async fn a_lease_renews_and_a_lapsed_one_is_requeued_with_a_backoff() {
    let (_d, store, tenant) = open().await;
    let file = video(&store, &tenant).await;
    let job = alone(
        &store,
        &file,
        ComputeKind::Transcription,
        "recommended",
        1_000,
    )
    .await;
    let me = node("ZB-NODE02");
    let got = claim(&store, "ZB-NODE02", &ALL_AI, None, "tok", 10_000)
        .await
        .unwrap();
    assert_eq!(got.id, job.id);

    // Another node, another token: refused.
    let renew = |who: NodeId, token: &'static str, progress: i64, now: i64| {
        let store = store.clone();
        let id = job.id.clone();
        async move {
            store
                .renew_compute_lease(
                    &id,
                    &who,
                    token,
                    progress,
                    Some("transcribing 00:30 of 01:00"),
                    now + LEASE,
                    now,
                )
                .await
                .unwrap()
        }
    };
    assert!(renew(node("ZB-NODE03"), "tok", 10, 20_000).await.is_none());
    assert!(renew(me.clone(), "other", 10, 20_000).await.is_none());
    let r = renew(me.clone(), "tok", 150, 20_000).await.unwrap();
    assert_eq!(r.progress, 100, "clamped");
    assert_eq!(r.lease_expires_at, Some(20_000 + LEASE));
    assert_eq!(
        r.phase_detail.as_deref(),
        Some("transcribing 00:30 of 01:00")
    );
    let r = renew(me.clone(), "tok", 40, 30_000).await.unwrap();
    assert_eq!(r.progress, 40);
    assert!(store
        .leased_compute_job(&job.id, Some(&me), "tok", 30_001)
        .await
        .unwrap()
        .is_some());
    assert!(store
        .leased_compute_job(&job.id, None, "tok", 30_001)
        .await
        .unwrap()
        .is_some());
    assert!(store
        .leased_compute_job(&job.id, Some(&node("ZB-NODE03")), "tok", 30_001)
        .await
        .unwrap()
        .is_none());

    // Not lapsed yet: nothing moves. Lapsed: queued again, one retry used, backoff.
    let lapse = 30_000 + LEASE;
    assert_eq!(
        store.requeue_lapsed_compute_jobs(lapse - 1).await.unwrap(),
        0
    );
    assert_eq!(store.requeue_lapsed_compute_jobs(lapse).await.unwrap(), 1);
    let back = store.compute_job(&job.id).await.unwrap().unwrap();
    assert_eq!(back.status, ComputeJobState::Queued);
    assert_eq!(back.retry_count, 1);
    assert_eq!(back.retry_after, Some(lapse + COMPUTE_RETRY.backoff_ms(1)));
    assert_eq!(back.error_message.as_deref(), Some(COMPUTE_LAPSED_ERROR));
    assert_eq!(
        (
            back.lease_node.clone(),
            back.lease_expires_at,
            back.progress
        ),
        (None, None, 0)
    );
    assert_eq!(back.tenant_status(), ComputeStatus::Queued);
    // The old lease answers nothing; the job waits out its backoff.
    assert!(renew(me.clone(), "tok", 50, lapse + 1).await.is_none());
    assert!(store
        .leased_compute_job(&job.id, None, "tok", lapse + 1)
        .await
        .unwrap()
        .is_none());
    let ready = lapse + COMPUTE_RETRY.backoff_ms(1);
    assert!(claim(&store, "ZB-NODE03", &ALL_AI, None, "t2", ready - 1)
        .await
        .is_none());
    let again = claim(&store, "ZB-NODE03", &ALL_AI, None, "t2", ready)
        .await
        .unwrap();
    assert_eq!(
        (again.id, again.retry_count, again.retry_after),
        (job.id, 1, None)
    );
}

#[tokio::test]
async fn outputs_then_done_emit_one_event_under_the_encodes_id() {
    let (_d, store, tenant) = open().await;
    let file = video(&store, &tenant).await;
    let enc = with_encode(
        &store,
        &file,
        vec![ask(&file, ComputeKind::Transcription, "fastest")],
    )
    .await;
    encode_ends(&store, &enc, "local_complete", 50_000).await;
    let job = claim(&store, "ZB-NODE01", &ALL_AI, Some(&enc), "tok", 50_001)
        .await
        .unwrap();
    let (srt, vtt) = (FileId::new_random(), FileId::new_random());

    let done = |now: i64| {
        let store = store.clone();
        let id = job.id.clone();
        async move {
            store
                .complete_compute_job(&id, "tok", Some("en"), now, &build)
                .await
        }
    };
    assert!(
        matches!(done(50_100).await, Err(MetaError::Conflict(_))),
        "no output yet"
    );
    // A vision output on a transcription: refused.
    let wrong = store
        .set_compute_output(&job.id, "tok", ComputeOutputKind::Sidecar, srt, 50_150)
        .await;
    assert!(matches!(wrong, Err(MetaError::Conflict(_))));
    let r = store
        .set_compute_output(&job.id, "tok", ComputeOutputKind::Srt, srt, 50_200)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.srt_file_id, Some(srt));
    assert!(
        matches!(done(50_300).await, Err(MetaError::Conflict(_))),
        "the VTT is missing"
    );
    assert!(store
        .set_compute_output(&job.id, "bad", ComputeOutputKind::Vtt, vtt, 50_350)
        .await
        .unwrap()
        .is_none());
    store
        .set_compute_output(&job.id, "tok", ComputeOutputKind::Vtt, vtt, 50_400)
        .await
        .unwrap()
        .unwrap();
    assert!(events(&store, "transcription.complete").await.is_empty());

    let finished = done(50_500).await.unwrap().unwrap();
    assert_eq!(finished.status, ComputeJobState::Complete);
    assert_eq!(
        (finished.progress, finished.completed_at),
        (100, Some(50_500))
    );
    assert_eq!(finished.language.as_deref(), Some("en"));
    assert_eq!(
        (finished.srt_file_id, finished.vtt_file_id),
        (Some(srt), Some(vtt))
    );
    assert_eq!(finished.lease_expires_at, None);
    // Done again (a retried call): the lease is gone, no second event.
    assert!(done(50_600).await.unwrap().is_none());
    assert_eq!(
        events(&store, "transcription.complete").await,
        vec![Some(enc.clone())]
    );

    // The HLS subtitle track follows the newest complete transcription.
    let latest = store
        .latest_transcription(file.file_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((latest.id, latest.vtt_file_id), (job.id.clone(), Some(vtt)));
    assert!(store
        .in_flight_compute_job(file.file_id, ComputeKind::Transcription, "fastest")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_standalone_vision_run_reports_under_its_own_id() {
    let (_d, store, tenant) = open().await;
    let file = video(&store, &tenant).await;
    let job = alone(&store, &file, ComputeKind::Vision, "standard", 1_000).await;
    let same = store
        .in_flight_compute_job(file.file_id, ComputeKind::Vision, "standard")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(same.id, job.id);
    assert!(store
        .in_flight_compute_job(file.file_id, ComputeKind::Vision, "hq")
        .await
        .unwrap()
        .is_none());
    claim(
        &store,
        "ZB-NODE02",
        &["vision:standard"],
        None,
        "tok",
        2_000,
    )
    .await
    .unwrap();
    let sidecar = FileId::new_random();
    store
        .set_compute_output(&job.id, "tok", ComputeOutputKind::Sidecar, sidecar, 3_000)
        .await
        .unwrap()
        .unwrap();
    let done = store
        .complete_compute_job(&job.id, "tok", None, 4_000, &build)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((done.sidecar_file_id, done.language), (Some(sidecar), None));
    assert_eq!(
        events(&store, "vision.complete").await,
        vec![Some(job.id.clone())]
    );
    assert!(store
        .latest_transcription(file.file_id)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn transient_failures_retry_until_the_last_try_and_permanent_ones_fail_at_once() {
    let (_d, store, tenant) = open().await;
    let file = video(&store, &tenant).await;
    let job = alone(&store, &file, ComputeKind::Transcription, "fastest", 1_000).await;
    let mut now = 10_000;
    let mut waits = Vec::new();
    for try_no in 1..=COMPUTE_TRIES {
        let token = format!("tok{try_no}");
        claim(&store, "ZB-NODE02", &ALL_AI, None, &token, now)
            .await
            .unwrap();
        assert!(store
            .fail_compute_job(&job.id, "wrong", "x", false, now)
            .await
            .unwrap()
            .is_none());
        let after = store
            .fail_compute_job(&job.id, &token, "ffmpeg exited with 1", false, now + 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(after.error_message.as_deref(), Some("ffmpeg exited with 1"));
        if try_no < COMPUTE_TRIES {
            assert_eq!(after.status, ComputeJobState::Queued);
            assert_eq!(after.retry_count, try_no);
            let at = after.retry_after.unwrap();
            waits.push(at - (now + 1));
            now = at;
        } else {
            assert_eq!(after.status, ComputeJobState::Failed);
            assert_eq!(after.tenant_status(), ComputeStatus::Failed);
            assert_eq!(after.retry_after, None);
        }
    }
    assert_eq!(waits, vec![5_000, 10_000], "backoff doubles");
    assert!(
        claim(&store, "ZB-NODE02", &ALL_AI, None, "late", now + 1_000_000)
            .await
            .is_none()
    );

    let perm = alone(&store, &file, ComputeKind::Vision, "standard", 2_000).await;
    claim(&store, "ZB-NODE02", &ALL_AI, None, "p", 3_000)
        .await
        .unwrap();
    let after = store
        .fail_compute_job(&perm.id, "p", "not a video", true, 3_001)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (after.status, after.retry_count),
        (ComputeJobState::Failed, 0)
    );
    assert!(!after.is_in_flight());
}

#[tokio::test]
async fn cancelling_the_encode_cancels_its_runs_only() {
    let (_d, store, tenant) = open().await;
    let file = video(&store, &tenant).await;
    let standalone = alone(&store, &file, ComputeKind::Vision, "hq", 1_000).await;
    let enc = with_encode(
        &store,
        &file,
        vec![ask(&file, ComputeKind::Transcription, "fastest")],
    )
    .await;
    store
        .cancel_encoding_job(&enc, "cancelled by the tenant", 9_000)
        .await
        .unwrap()
        .unwrap();

    let run = store
        .compute_jobs_of_encoding(&enc)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(run.status, ComputeJobState::Cancelled);
    assert_eq!(run.tenant_status(), ComputeStatus::Failed);
    let reason = run.error_message.unwrap();
    assert!(
        reason.contains("encode was cancelled") && reason.contains("cancelled by the tenant"),
        "{reason}"
    );
    let other = store.compute_job(&standalone.id).await.unwrap().unwrap();
    assert_eq!(other.status, ComputeJobState::Queued);
}

#[tokio::test]
async fn deleting_or_superseding_the_file_ends_its_runs() {
    let (_d, store, tenant) = open().await;
    // Superseded: a newer upload of the key completes; the old file's runs end,
    // the running one's lease with them.
    let old = file_at(&store, &tenant, "clip.mp4", 1_000, false).await;
    let running = alone(&store, &old, ComputeKind::Transcription, "fastest", 2_000).await;
    let queued = alone(&store, &old, ComputeKind::Vision, "standard", 2_001).await;
    claim(
        &store,
        "ZB-NODE02",
        &["transcription:fastest"],
        None,
        "tok",
        3_000,
    )
    .await
    .unwrap();
    file_at(&store, &tenant, "clip.mp4", 5_000, false).await;
    for id in [&running.id, &queued.id] {
        let j = store.compute_job(id).await.unwrap().unwrap();
        assert_eq!(j.status, ComputeJobState::Cancelled);
        assert_eq!(
            j.error_message.as_deref(),
            Some("superseded by a newer upload")
        );
    }
    assert!(store
        .leased_compute_job(&running.id, None, "tok", 3_001)
        .await
        .unwrap()
        .is_none());

    // Deleted: the file goes with its runs (attached ones too) and their outputs.
    let file = video(&store, &tenant).await;
    let enc = with_encode(
        &store,
        &file,
        vec![ask(&file, ComputeKind::Transcription, "fastest")],
    )
    .await;
    let done = alone(&store, &file, ComputeKind::Vision, "standard", 4_000).await;
    let out = file_at(
        &store,
        &tenant,
        &format!("{}/.zib/sidecar", file.object_key),
        4_500,
        true,
    )
    .await;
    assert!(store
        .mark_derived(
            out.file_id,
            file.file_id,
            DerivedKind::ComputeOutput(ComputeOutputKind::Sidecar)
        )
        .await
        .unwrap());
    let d = store.derived_file(out.file_id).await.unwrap().unwrap();
    assert_eq!(
        d.kind,
        DerivedKind::ComputeOutput(ComputeOutputKind::Sidecar)
    );
    assert_eq!(d.kind.as_str(), "sidecar");
    assert_eq!(
        store
            .compute_jobs_of_file(file.file_id)
            .await
            .unwrap()
            .len(),
        2
    );
    store
        .delete_file(&tenant.id, file.file_id, 9_000)
        .await
        .unwrap()
        .unwrap();
    assert!(store
        .compute_jobs_of_file(file.file_id)
        .await
        .unwrap()
        .is_empty());
    assert!(store.compute_job(&done.id).await.unwrap().is_none());
    assert!(store
        .compute_jobs_of_encoding(&enc)
        .await
        .unwrap()
        .is_empty());
    assert!(store.derived_file(out.file_id).await.unwrap().is_none());

    // The explicit cancel (the server's delete and supersede paths call it too).
    let f = video(&store, &tenant).await;
    alone(&store, &f, ComputeKind::Transcription, "fastest", 1_000).await;
    assert_eq!(
        store
            .cancel_compute_jobs_of_file(f.file_id, "gone", 2_000)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .cancel_compute_jobs_of_file(f.file_id, "gone", 2_000)
            .await
            .unwrap(),
        0
    );
}
