//! all-MiniLM-L6-v2 embeddings and the IAB ranking on top of them, with the real model
//! (`scripts/install-models.sh vision` installs it).

use std::time::Instant;

use zib_ai::embed::{cosine, Embedder};
use zib_ai::ModelsDir;

fn embedder() -> Embedder {
    let dir = ModelsDir::from_env().minilm();
    assert!(
        dir.join("model.safetensors").is_file(),
        "all-MiniLM-L6-v2 is not installed in {}: run scripts/install-models.sh vision \
         (or point ZIB_MODELS_DIR at a models directory)",
        dir.display()
    );
    match Embedder::load(&dir) {
        Ok(e) => e,
        Err(e) => panic!("loading {}: {e}", dir.display()),
    }
}

#[test]
fn similar_sentences_are_closer_than_unrelated_ones() {
    let e = embedder();
    let texts = [
        "a recipe for fresh pasta with tomato sauce",
        "cooking dinner in the kitchen",
        "football match highlights",
    ];
    let v = e.embed(&texts).expect("embed");
    assert_eq!(v.len(), 3);
    for x in &v {
        assert_eq!(x.len(), 384);
        let norm: f32 = x.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "not unit length: {norm}");
    }
    let (near, far) = (cosine(&v[0], &v[1]), cosine(&v[0], &v[2]));
    eprintln!("pasta~cooking {near:.3}, pasta~football {far:.3}");
    assert!(
        near > far + 0.1,
        "pasta~cooking {near} vs pasta~football {far}"
    );
}

#[test]
fn batching_padding_and_long_texts_do_not_change_a_vector() {
    let e = embedder();
    let alone = e.embed(&["a short sentence"]).expect("embed");
    let long = "word ".repeat(2000);
    let batch = e
        .embed(&[
            "a short sentence",
            &long,
            "",
            "another, much longer sentence with more words in it",
        ])
        .expect("embed");
    assert_eq!(batch.len(), 4);
    // Padding is masked out: the same text gives the same vector in any batch.
    let same = cosine(&alone[0], &batch[0]);
    assert!(same > 0.9999, "cosine to itself in a padded batch: {same}");
    // Cut at 256 tokens, empty text still a vector, nothing NaN.
    assert_eq!(e.token_ids(&long, 256).len(), 256);
    for v in &batch {
        assert!(v.iter().all(|x| x.is_finite()));
    }
    assert!(e.embed(&[]).expect("embed nothing").is_empty());
}

#[test]
fn the_tokenizer_matches_berts_uncased_wordpiece() {
    let e = embedder();
    let pieces = |t: &str| -> Vec<String> {
        e.token_ids(t, 256)
            .into_iter()
            .map(|id| e.token(id).unwrap_or("?").to_string())
            .collect()
    };
    // The Hugging Face docs' example for this vocabulary, then accents and punctuation.
    assert_eq!(
        pieces("I have a new GPU!"),
        ["[CLS]", "i", "have", "a", "new", "gp", "##u", "!", "[SEP]"]
    );
    assert_eq!(
        pieces("Héllo, WORLD!"),
        ["[CLS]", "hello", ",", "world", "!", "[SEP]"]
    );
}

#[test]
fn a_cooking_transcript_ranks_food_above_cars_and_sports() {
    let e = embedder();
    let transcript = "Today I'm going to show you how to make fresh pasta at home. \
        Start with two cups of flour and three eggs, mix them into a dough and knead it \
        for ten minutes. While the dough rests, chop some garlic and simmer the tomatoes \
        with olive oil and basil. Roll the dough thin, cut your noodles, and boil them for \
        two minutes in salted water. Toss the pasta with the sauce and finish with parmesan.";
    let started = Instant::now();
    let ranked = zib_ai::iab::rank(&e, transcript).expect("rank");
    eprintln!("first rank (embeds the taxonomy): {:?}", started.elapsed());
    let started = Instant::now();
    let again = zib_ai::iab::rank(&e, transcript).expect("rank");
    eprintln!("second rank (taxonomy cached): {:?}", started.elapsed());
    assert_eq!(ranked, again);
    for c in ranked.iter().take(8) {
        eprintln!("{:>7} t{} {:.3} {}", c.id, c.tier, c.score, c.name);
    }
    let food = |name: &str| ranked.iter().position(|c| c.name == name).expect(name);
    let top_food = ranked
        .iter()
        .take(3)
        .any(|c| c.id == "210" || ["216", "217", "214", "221"].contains(&c.id.as_str()));
    assert!(
        top_food,
        "no Food & Drink category in the top 3: {:?}",
        &ranked[..3]
    );
    assert!(food("Food & Drink") < food("Automotive"));
    assert!(food("Food & Drink") < food("Sports"));
    assert!(ranked.iter().all(|c| (0.0..=1.0).contains(&c.score)));
    assert!(ranked.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(zib_ai::iab::rank(&e, "   ").expect("rank").is_empty());
}
