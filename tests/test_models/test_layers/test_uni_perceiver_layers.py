"""Uni-Perceiver v2 building blocks
(:mod:`vitdense.models.layers.uni_perceiver_layers`): unified similarity
loss, attribute-routed conditional MoE, unified decoder, attention pooling,
regional tokens and the RoBERTa text encoder (tiny BPE vocabulary built in
the test)."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmdet.models.layers.transformer.utils import coordinate_to_encoding

from vitdense.models.layers import (AttentionPoolingHeads, ConditionalMoEFFN,
                                    RegionTokenEmbed, RobertaTextEncoder,
                                    UnifiedDecoder, unified_logits,
                                    unified_loss)
from vitdense.registry import MODELS

SPECIAL_TOKENS = ['<s>', '<pad>', '</s>', '<unk>', '<mask>']


def _direct_loss(x, y, labels, tau):
    """-log softmax_j(cos(x_i, y_j) / tau)[label_i], one sample at a time."""
    losses = []
    for xi, label in zip(x, labels):
        cos = [float(xi @ yj / (xi.norm() * yj.norm())) for yj in y]
        logits = [c / tau for c in cos]
        log_z = math.log(sum(math.exp(v) for v in logits))
        losses.append(log_z - logits[int(label)])
    return losses


def test_unified_loss_equals_direct_log_softmax_of_cosine_over_tau():
    x = torch.tensor([[1., 0., 0.], [1., 1., 0.], [0., -2., 1.],
                      [3., 1., -1.]])
    y = torch.tensor([[2., 0., 0.], [0., 1., 0.], [1., 1., 1.]])
    labels = torch.tensor([0, 1, 2, 0])
    tau = 0.07
    logit_scale = torch.tensor(math.log(1 / tau))
    direct = _direct_loss(x, y, labels, tau)

    loss = unified_loss(x, y, labels, logit_scale)
    assert loss.item() == pytest.approx(sum(direct) / 4, rel=1e-5)

    # batched x (2, 2, C), weights and avg_factor
    weight = torch.tensor([1., 0., 2., 1.])
    loss = unified_loss(x.view(2, 2, 3), y, labels.view(2, 2), logit_scale,
                        weight=weight.view(2, 2), avg_factor=3.)
    expected = (direct[0] + 2 * direct[2] + direct[3]) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-5)

    criterion = MODELS.build(dict(type='UnifiedSimilarityLoss',
                                  loss_weight=2.))
    assert criterion(x, y, labels, logit_scale).item() == pytest.approx(
        sum(direct) / 2, rel=1e-5)


def test_unified_logits_cap_the_scale_at_100_as_the_official():
    x, y = torch.randn(3, 5), torch.randn(4, 5)
    cos = F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).t()
    logit_scale = torch.tensor(math.log(1000.), requires_grad=True)
    logits = unified_logits(x, y, logit_scale)
    torch.testing.assert_close(logits, 100 * cos)
    logits.sum().backward()
    assert logit_scale.grad.item() == 0
    torch.testing.assert_close(
        unified_logits(x, y, torch.tensor(math.log(10.))), 10 * cos)


def _moe_with_identity_routing(top_k=1, num=3, dims=8):
    """Attribute a -> expert a: attribute embeddings peak on channel a and
    the gate reads channel e for expert e."""
    moe = ConditionalMoEFFN(dims, 16, num_experts=num, num_attributes=num,
                            top_k=top_k)
    with torch.no_grad():
        moe.attribute_embed.weight.copy_(10 * torch.eye(num, dims))
        moe.gate.weight.copy_(torch.eye(num, dims))
    return moe.eval()


def test_moe_routes_each_attribute_to_its_expert():
    torch.manual_seed(0)
    moe = _moe_with_identity_routing()
    attributes = torch.tensor([[0, 1, 2, 1, 0], [2, 2, 0, 1, 1]])
    indices, weights = moe.route(attributes)
    assert indices.shape == weights.shape == (2, 5, 1)
    assert torch.equal(indices[..., 0], attributes)

    x = torch.randn(2, 5, 8)
    out = moe(x, attributes)
    # top-1: each linear of the chosen expert scaled by its softmax prob
    for b in range(2):
        for n in range(5):
            e, g = int(indices[b, n, 0]), weights[b, n, 0]
            h = F.gelu(g * F.linear(x[b, n], moe.fc1_weight[e],
                                    moe.fc1_bias[e]))
            y = g * F.linear(h, moe.fc2_weight[e], moe.fc2_bias[e])
            torch.testing.assert_close(out[b, n], y)

    with torch.no_grad():
        moe.fc1_weight[1].add_(0.5)
        moe.fc2_bias[1].add_(0.5)
    changed = (moe(x, attributes) - out).abs().amax(-1) > 1e-6
    assert torch.equal(changed, attributes == 1)


def test_moe_top2_weights_are_normalised_and_mixed_in_weight_space():
    torch.manual_seed(1)
    moe = ConditionalMoEFFN(8, 16, num_experts=4, num_attributes=3,
                            top_k=2).eval()
    attributes = torch.tensor([[0, 1, 2, 2]])
    indices, weights = moe.route(attributes)
    assert indices.shape == (1, 4, 2)
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 4))
    probs = moe.gate(moe.attribute_norm(moe.attribute_embed.weight)).softmax(
        -1)
    for a in range(3):
        top = probs[a].topk(2)
        idx = indices[attributes == a][0]
        assert torch.equal(idx, top.indices)
        torch.testing.assert_close(weights[attributes == a][0],
                                   top.values / top.values.sum())

    x = torch.randn(1, 4, 8)
    out = moe(x, attributes)
    idx, g = indices[0, 0], weights[0, 0]
    w1 = g[0] * moe.fc1_weight[idx[0]] + g[1] * moe.fc1_weight[idx[1]]
    b1 = g[0] * moe.fc1_bias[idx[0]] + g[1] * moe.fc1_bias[idx[1]]
    w2 = g[0] * moe.fc2_weight[idx[0]] + g[1] * moe.fc2_weight[idx[1]]
    b2 = g[0] * moe.fc2_bias[idx[0]] + g[1] * moe.fc2_bias[idx[1]]
    torch.testing.assert_close(
        out[0, 0], F.linear(F.gelu(F.linear(x[0, 0], w1, b1)), w2, b2))


def test_moe_gate_noise_only_in_training():
    torch.manual_seed(2)
    moe = ConditionalMoEFFN(8, 16, num_experts=4, num_attributes=2,
                            gate_noise_std=1e4)
    attributes = torch.tensor([0, 1])
    moe.eval()
    first = moe.route(attributes)
    for _ in range(5):
        again = moe.route(attributes)
        assert torch.equal(again[0], first[0])
        assert torch.equal(again[1], first[1])
    moe.train()
    drawn = {tuple(moe.route(attributes)[0].flatten().tolist())
             for _ in range(20)}
    assert len(drawn) > 1


def test_moe_rejects_unknown_attributes():
    moe = ConditionalMoEFFN(8, 16, num_experts=2, num_attributes=3)
    with pytest.raises(ValueError, match=r'attribute ids must be in \[0, 3\)'):
        moe(torch.randn(1, 2, 8), torch.tensor([[0, 3]]))
    with pytest.raises(ValueError, match='shape of x'):
        moe(torch.randn(1, 2, 8), torch.tensor([0, 1]))


def test_decoder_respects_key_padding_mask():
    torch.manual_seed(3)
    decoder = UnifiedDecoder(num_layers=2, embed_dims=16, num_heads=2,
                             feedforward_channels=32, num_experts=2,
                             num_attributes=3, top_k=1).eval()
    x = torch.randn(2, 7, 16)
    attributes = torch.tensor([[0, 1, 1, 1, 2, 2, 2], [0, 1, 1, 1, 1, 2, 2]])
    padding = torch.zeros(2, 7, dtype=torch.bool)
    padding[0, 5:] = True
    out = decoder(x, attributes, padding)
    assert out.shape == (2, 7, 16)

    x2 = x.clone()
    x2[0, 5:] = 100 * torch.randn(2, 16)
    out2 = decoder(x2, attributes, padding)
    torch.testing.assert_close(out2[0, :5], out[0, :5])
    torch.testing.assert_close(out2[1], out[1])
    # without the mask the same change reaches every token
    changed = decoder(x2, attributes) - decoder(x, attributes)
    assert changed[0, :5].abs().amin(-1).gt(0).all()


def test_decoder_drops_paths_at_the_same_rate_in_every_layer():
    decoder = UnifiedDecoder(num_layers=3, embed_dims=16, num_heads=2,
                             feedforward_channels=32, num_experts=2,
                             num_attributes=2, drop_path=0.2)
    rates = [getattr(layer.drop_path, 'drop_prob', 0.)
             for layer in decoder.layers]
    assert rates == pytest.approx([0.2, 0.2, 0.2])


@pytest.mark.parametrize('size', [(5, 7), (9, 3)])
def test_attention_pooling_heads_any_input_size(size):
    torch.manual_seed(4)
    heads = AttentionPoolingHeads(in_channels=12, embed_dims=16, num_heads=2,
                                  num_queries=3).eval()
    x = torch.randn(2, 12, *size)
    out = heads(x)
    assert out.shape == (2, 3, 16)
    # queries differ, images differ, and position matters (flip the map)
    assert not torch.allclose(out[:, 0], out[:, 1])
    assert not torch.allclose(out[0], out[1])
    assert not torch.allclose(heads(x.flip(-1)), out)


def test_region_token_embed_box_and_mask_terms():
    torch.manual_seed(5)
    embed = RegionTokenEmbed(embed_dims=16).eval()
    q_sem = torch.randn(2, 3, 16)
    boxes = torch.rand(2, 3, 4)
    no_mask = embed(q_sem, boxes)
    assert no_mask.shape == (2, 3, 16)
    expected = q_sem + embed.box_proj(
        coordinate_to_encoding(boxes, num_feats=8))
    torch.testing.assert_close(no_mask, expected)

    # M sums the pooled sigmoid with all-ones weights: 28*28*sigmoid(c)
    with torch.no_grad():
        embed.mask_proj.weight.fill_(1.)
        embed.mask_proj.bias.zero_()
    mask_logits = torch.full((2, 3, 37, 45), 0.5)
    with_mask = embed(q_sem, boxes, mask_logits)
    torch.testing.assert_close(
        with_mask - no_mask,
        torch.full_like(no_mask, 784 * torch.sigmoid(torch.tensor(0.5))))
    mask_logits[0, 1] = -5.
    other = embed(q_sem, boxes, mask_logits)
    changed = (other - with_mask).abs().amax(-1) > 1e-4
    assert changed.tolist() == [[False, True, False], [False, False, False]]


@pytest.fixture(scope='module')
def bpe_dir(tmp_path_factory):
    from tokenizers import ByteLevelBPETokenizer
    folder = tmp_path_factory.mktemp('bpe')
    tokenizer = ByteLevelBPETokenizer()
    words = ['circle', 'square', 'triangle', 'a photo of a', 'red', 'shape']
    tokenizer.train_from_iterator(
        words * 5, vocab_size=300, min_frequency=1,
        special_tokens=SPECIAL_TOKENS)
    tokenizer.save_model(str(folder))
    return folder


def _tiny_roberta(vocab_size=300):
    return dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1,
                num_attention_heads=2, intermediate_size=64,
                max_position_embeddings=24)


def test_text_encoder_masks_match_token_lengths_and_train(bpe_dir):
    torch.manual_seed(6)
    encoder = RobertaTextEncoder(_tiny_roberta(), str(bpe_dir), max_length=8)
    assert encoder.out_channels == 32
    vocab = encoder.tokenizer.get_vocab()
    assert [vocab[t] for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]

    texts = ['circle', 'a photo of a red square', 'triangle shape']
    tokens, padding = encoder(texts)
    lengths = [min(len(encoder.tokenizer(t)['input_ids']), 8) for t in texts]
    assert tokens.shape == (3, max(lengths), 32)
    assert padding.dtype == torch.bool
    assert (~padding).sum(1).tolist() == lengths
    assert lengths[0] < lengths[1]

    tokens[~padding].pow(2).sum().backward()
    model = encoder.model
    assert model.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.encoder.layer[0].parameters())
    # tokenization is cached per distinct list of texts
    assert encoder.tokenize(texts) is encoder.tokenize(list(texts))


@pytest.mark.parametrize('layout', ['model', 'masked_lm'])
def test_text_encoder_loads_pretrained_weights_in_init_weights(
        bpe_dir, tmp_path, layout):
    """A saved HF RobertaModel folder (safetensors) and a RobertaForMaskedLM
    ``pytorch_model.bin`` (roberta-base's layout: ``roberta.`` prefix,
    ``lm_head``) load strictly, through the weights-only loader."""
    from transformers import RobertaConfig, RobertaForMaskedLM
    torch.manual_seed(7)
    source = RobertaTextEncoder(_tiny_roberta(), str(bpe_dir)).eval()
    if layout == 'model':
        source.model.save_pretrained(str(tmp_path))
        assert (tmp_path / 'model.safetensors').is_file()
    else:
        mlm = RobertaForMaskedLM(RobertaConfig(**_tiny_roberta()))
        mlm.roberta.load_state_dict(source.model.state_dict(), strict=False)
        state = {k: v for k, v in mlm.state_dict().items()}
        assert any(k.startswith('lm_head.') for k in state)
        torch.save(state, str(tmp_path / 'pytorch_model.bin'))
    loaded = RobertaTextEncoder(
        _tiny_roberta(), str(bpe_dir), pretrained=str(tmp_path))
    loaded.init_weights()
    loaded.eval()
    texts = ['red circle', 'square']
    with torch.no_grad():
        torch.testing.assert_close(loaded(texts)[0], source(texts)[0])


def test_text_encoder_names_the_missing_tokenizer_file(bpe_dir, tmp_path):
    (tmp_path / 'vocab.json').write_text((bpe_dir / 'vocab.json').read_text())
    # built without the vocabulary; it is read at the first text
    encoder = RobertaTextEncoder(_tiny_roberta(), str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r'merges\.txt'):
        encoder(['circle'])
    small = RobertaTextEncoder(_tiny_roberta(vocab_size=100), str(bpe_dir))
    with pytest.raises(ValueError, match='vocab_size=100'):
        small(['circle'])
    with pytest.raises(FileNotFoundError, match='neither model.safetensors'):
        RobertaTextEncoder(_tiny_roberta(), str(bpe_dir),
                           pretrained=str(tmp_path)).init_weights()
