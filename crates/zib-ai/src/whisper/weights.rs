//! CTranslate2 Whisper variables renamed onto candle-transformers' (Hugging Face)
//! names, with the fused projections split, and the model's shape read off them.
//!
//! | CTranslate2 | candle |
//! |---|---|
//! | `{enc,dec}/layer_N/self_attention/linear_0` (fused q,k,v) | `self_attn.{q,k,v}_proj` |
//! | `…/self_attention/linear_1` | `self_attn.out_proj` |
//! | `decoder/layer_N/attention/linear_0` / `linear_1` (fused k,v) / `linear_2` | `encoder_attn.q_proj` / `{k,v}_proj` / `out_proj` |
//! | `…/ffn/linear_0`, `linear_1`, `layer_norm` | `fc1`, `fc2`, `final_layer_norm` |
//! | `layer_norm/{gamma,beta}` | `…layer_norm.{weight,bias}` |
//!
//! Whisper's key projections have no bias: CTranslate2 stores zeros for it in the
//! fused bias, dropped here. The output projection is tied to the token embeddings.

use std::collections::HashMap;

use candle_core::Tensor;
use candle_transformers::models::whisper::Config;

use crate::ct2::Ct2Model;
use crate::AiError;

/// The weights by candle name, and the model's configuration.
pub(super) fn from_ct2(m: &Ct2Model) -> Result<(HashMap<String, Tensor>, Config), AiError> {
    let config = config(m)?;
    let mut out = HashMap::new();
    let mut put = |name: String, t: Tensor| {
        out.insert(name, t);
    };
    let d = config.d_model;
    for side in ["conv1", "conv2"] {
        for p in ["weight", "bias"] {
            put(
                format!("model.encoder.{side}.{p}"),
                m.tensor(&format!("encoder/{side}/{p}"))?,
            );
        }
    }
    put_norm(
        m,
        &mut put,
        "encoder/layer_norm",
        "model.encoder.layer_norm",
    )?;
    put_norm(
        m,
        &mut put,
        "decoder/layer_norm",
        "model.decoder.layer_norm",
    )?;
    put(
        "model.decoder.embed_tokens.weight".into(),
        m.tensor("decoder/embeddings/weight")?,
    );
    put(
        "model.decoder.embed_positions.weight".into(),
        m.tensor("decoder/position_encodings/encodings")?,
    );
    for (side, layers) in [
        ("encoder", config.encoder_layers),
        ("decoder", config.decoder_layers),
    ] {
        for i in 0..layers {
            let from = format!("{side}/layer_{i}");
            let to = format!("model.{side}.layers.{i}");
            // Self-attention: fused q, k, v.
            let sa = format!("{from}/self_attention");
            let w = m.tensor(&format!("{sa}/linear_0/weight"))?;
            let b = m.tensor(&format!("{sa}/linear_0/bias"))?;
            let parts = split_rows(m, &w, 3, d, &sa)?;
            let biases = split_rows(m, &b, 3, d, &sa)?;
            put(format!("{to}.self_attn.q_proj.weight"), parts[0].clone());
            put(format!("{to}.self_attn.k_proj.weight"), parts[1].clone());
            put(format!("{to}.self_attn.v_proj.weight"), parts[2].clone());
            put(format!("{to}.self_attn.q_proj.bias"), biases[0].clone());
            put(format!("{to}.self_attn.v_proj.bias"), biases[2].clone());
            put_linear(
                m,
                &mut put,
                &format!("{sa}/linear_1"),
                &format!("{to}.self_attn.out_proj"),
            )?;
            put_norm(
                m,
                &mut put,
                &format!("{sa}/layer_norm"),
                &format!("{to}.self_attn_layer_norm"),
            )?;
            // Cross-attention (decoder only): q, then fused k, v, then out.
            if side == "decoder" {
                let ca = format!("{from}/attention");
                let ea = format!("{to}.encoder_attn");
                put_linear(
                    m,
                    &mut put,
                    &format!("{ca}/linear_0"),
                    &format!("{ea}.q_proj"),
                )?;
                let w = m.tensor(&format!("{ca}/linear_1/weight"))?;
                let b = m.tensor(&format!("{ca}/linear_1/bias"))?;
                let parts = split_rows(m, &w, 2, d, &ca)?;
                let biases = split_rows(m, &b, 2, d, &ca)?;
                put(format!("{ea}.k_proj.weight"), parts[0].clone());
                put(format!("{ea}.v_proj.weight"), parts[1].clone());
                put(format!("{ea}.v_proj.bias"), biases[1].clone());
                put_linear(
                    m,
                    &mut put,
                    &format!("{ca}/linear_2"),
                    &format!("{ea}.out_proj"),
                )?;
                put_norm(
                    m,
                    &mut put,
                    &format!("{ca}/layer_norm"),
                    &format!("{to}.encoder_attn_layer_norm"),
                )?;
            }
            put_linear(
                m,
                &mut put,
                &format!("{from}/ffn/linear_0"),
                &format!("{to}.fc1"),
            )?;
            put_linear(
                m,
                &mut put,
                &format!("{from}/ffn/linear_1"),
                &format!("{to}.fc2"),
            )?;
            put_norm(
                m,
                &mut put,
                &format!("{from}/ffn/layer_norm"),
                &format!("{to}.final_layer_norm"),
            )?;
        }
    }
    Ok((out, config))
}

fn put_linear(
    m: &Ct2Model,
    put: &mut impl FnMut(String, Tensor),
    from: &str,
    to: &str,
) -> Result<(), AiError> {
    put(format!("{to}.weight"), m.tensor(&format!("{from}/weight"))?);
    put(format!("{to}.bias"), m.tensor(&format!("{from}/bias"))?);
    Ok(())
}

fn put_norm(
    m: &Ct2Model,
    put: &mut impl FnMut(String, Tensor),
    from: &str,
    to: &str,
) -> Result<(), AiError> {
    put(format!("{to}.weight"), m.tensor(&format!("{from}/gamma"))?);
    put(format!("{to}.bias"), m.tensor(&format!("{from}/beta"))?);
    Ok(())
}

/// Splits a fused `[n·d, …]` weight (or `[n·d]` bias) into `n` parts of `d` rows.
fn split_rows(
    m: &Ct2Model,
    t: &Tensor,
    n: usize,
    d: usize,
    what: &str,
) -> Result<Vec<Tensor>, AiError> {
    let rows = t.dims().first().copied().unwrap_or(0);
    if rows != n * d {
        return Err(m.bad(format!("{what}: {rows} fused rows, {} expected", n * d)));
    }
    (0..n)
        .map(|i| Ok(t.narrow(0, i * d, d)?.contiguous()?))
        .collect()
}

/// The shape of the model, from its tensors (CTranslate2's `config.json` does not
/// hold it).
fn config(m: &Ct2Model) -> Result<Config, AiError> {
    let dims = |name: &str| -> Result<Vec<usize>, AiError> { Ok(m.require(name)?.shape.clone()) };
    let conv1 = dims("encoder/conv1/weight")?;
    let embeddings = dims("decoder/embeddings/weight")?;
    let enc_pos = dims("encoder/position_encodings/encodings")?;
    let dec_pos = dims("decoder/position_encodings/encodings")?;
    let (&[d_model, n_mels, 3], &[vocab_size, d_embed], &[n_audio_ctx, _], &[n_text_ctx, _]) = (
        conv1.as_slice(),
        embeddings.as_slice(),
        enc_pos.as_slice(),
        dec_pos.as_slice(),
    ) else {
        return Err(m.bad("unexpected conv1, embedding or position shapes".into()));
    };
    if d_embed != d_model || d_model == 0 || d_model % 64 != 0 {
        return Err(m.bad(format!("model width {d_model}, embeddings {d_embed}")));
    }
    let count = |side: &str| {
        (0..)
            .take_while(|i| {
                m.get(&format!("{side}/layer_{i}/ffn/linear_0/weight"))
                    .is_some()
            })
            .count()
    };
    let heads = |side: &str| -> usize {
        m.get(&format!("{side}/num_heads"))
            .and_then(|v| v.as_int())
            .and_then(|h| usize::try_from(h).ok())
            .filter(|h| *h > 0 && d_model % h == 0)
            .unwrap_or(d_model / 64)
    };
    let (encoder_layers, decoder_layers) = (count("encoder"), count("decoder"));
    if encoder_layers == 0 || decoder_layers == 0 {
        return Err(m.bad("no encoder or decoder layers".into()));
    }
    Ok(Config {
        num_mel_bins: n_mels,
        max_source_positions: n_audio_ctx,
        d_model,
        encoder_attention_heads: heads("encoder"),
        encoder_layers,
        vocab_size,
        max_target_positions: n_text_ctx,
        decoder_attention_heads: heads("decoder"),
        decoder_layers,
        suppress_tokens: Vec::new(),
    })
}
