import torch

from opengenie.nn import FSQ, VectorQuantizer


def test_vq_straight_through_gradient_reaches_encoder():
    vq = VectorQuantizer(codes=16, dim=8)
    z = torch.randn(32, 8, requires_grad=True)
    q, ids, loss, stats = vq(z)
    (q.sum() + loss).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert ids.shape == (32,) and int(ids.min()) >= 0 and int(ids.max()) < 16
    # The forward value is the (unit-norm) code itself.
    assert torch.allclose(q.detach(), vq.codebook()[ids], atol=1e-6)


def test_vq_commitment_weight_is_beta():
    torch.manual_seed(0)
    z = torch.randn(64, 8)
    losses = []
    for beta in (0.0, 1.0):
        torch.manual_seed(1)
        vq = VectorQuantizer(codes=16, dim=8, beta=beta).eval()
        losses.append(float(vq(z)[2].detach()))
    # loss = (1 + beta) * mse at the forward value, so beta=1 doubles it.
    assert abs(losses[1] - 2 * losses[0]) < 1e-5


def test_dead_code_reset_revives_unused_codes():
    torch.manual_seed(0)
    vq = VectorQuantizer(codes=32, dim=4, dead_code_steps=3).train()
    z = torch.randn(1, 4).repeat(64, 1) + 0.01 * torch.randn(64, 4)  # all near one code
    used_first = vq(z)[3]["codes_used"]
    assert used_first <= 2
    before = vq.embedding.detach().clone()
    for _ in range(3):
        vq(z)
    changed = (vq.embedding.detach() - before).abs().sum(-1) > 0
    assert changed.sum() >= 28  # the codes nobody used were moved onto the data
    # Revived codes now sit on encoder outputs, so new inputs there pick several codes.
    assert vq(z)[3]["codes_used"] > used_first


def test_dead_code_reset_is_off_in_eval():
    vq = VectorQuantizer(codes=8, dim=4, dead_code_steps=1).eval()
    before = vq.embedding.detach().clone()
    for _ in range(3):
        vq(torch.randn(16, 4))
    assert torch.equal(before, vq.embedding.detach())


def test_fsq_codes_round_trip_and_gradients():
    fsq = FSQ((8, 5, 3, 2), dim=6)
    assert fsq.num_codes == 240
    z = (3 * torch.randn(500, 6)).requires_grad_()
    q, ids, loss, stats = fsq(z)
    assert int(ids.min()) >= 0 and int(ids.max()) < 240
    assert torch.allclose(fsq.lookup(ids), q.detach(), atol=1e-5)
    assert fsq.codebook().shape == (240, 6)
    q.sum().backward()
    assert z.grad.abs().sum() > 0
    assert float(loss) == 0.0
