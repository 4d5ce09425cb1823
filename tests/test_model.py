import torch
import torch.nn.functional as F

from recog.decode.greedy import greedy_decode
from recog.models import CTCModel, ModelOptions, load_checkpoint, save_checkpoint
from recog.models.ctc import ctc_min_frames, stack_frames
from recog.tokens import Vocabulary


def test_greedy_by_hand() -> None:
    # frames: a a - a b b - (blank = 0) -> a a b ; second utterance cut at length 2
    ids = torch.tensor([[1, 1, 0, 1, 2, 2, 0], [2, 2, 1, 1, 1, 1, 1]])
    log_probs = F.one_hot(ids, 3).float().log()
    assert greedy_decode(log_probs, torch.tensor([7, 2])) == [[1, 1, 2], [2]]


def test_stack_frames() -> None:
    x = torch.arange(2 * 5 * 2, dtype=torch.float32).reshape(2, 5, 2)
    y, lengths = stack_frames(x, torch.tensor([5, 3]), 2)
    assert y.shape == (2, 3, 4) and lengths.tolist() == [3, 2]
    assert y[0, 0].tolist() == [0, 1, 2, 3] and y[0, 2].tolist() == [8, 9, 0, 0]


def test_ctc_min_frames() -> None:
    assert ctc_min_frames([1, 2, 3]) == 3
    assert ctc_min_frames([1, 1, 2, 2, 2]) == 8


def test_padding_does_not_change_outputs() -> None:
    torch.manual_seed(0)
    model = CTCModel(4, 5, ModelOptions(hidden=8, layers=2, stack=2)).eval()
    x = torch.randn(1, 9, 4)
    padded = torch.cat([x, torch.randn(1, 4, 4)], dim=1)
    a, la = model(x, torch.tensor([9]))
    b, lb = model(padded, torch.tensor([9]))
    assert la.tolist() == lb.tolist() == [5]
    assert torch.allclose(a[0, :5], b[0, :5], atol=1e-6)
    assert torch.allclose(a.exp().sum(-1), torch.ones(1, 5), atol=1e-5)


def test_overfits_a_handful_of_utterances_to_zero_errors() -> None:
    """Four random 'utterances' with random labels: the model must learn them exactly."""
    torch.manual_seed(0)
    feats = torch.randn(4, 30, 6)
    lengths = torch.tensor([30, 26, 22, 18])
    labels = [torch.randint(1, 6, (n,)) for n in (7, 6, 5, 4)]
    targets, target_lengths = torch.cat(labels), torch.tensor([len(t) for t in labels])
    model = CTCModel(6, 6, ModelOptions(hidden=32, layers=2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        log_probs, out_lens = model(feats, lengths)
        loss = F.ctc_loss(log_probs.transpose(0, 1), targets, out_lens, target_lengths)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        log_probs, out_lens = model(feats, lengths)
    assert greedy_decode(log_probs, out_lens) == [t.tolist() for t in labels]


def test_checkpoint_round_trip(tmp_path) -> None:
    vocab = Vocabulary.from_symbols(["a", "b"])
    model = CTCModel(3, len(vocab), ModelOptions(hidden=4, layers=1, stack=3))
    model.set_normalization(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 2.0, 2.0]))
    save_checkpoint(tmp_path / "m.pt", model, vocab, {"name": "x"}, epoch=3)
    loaded, v2, payload = load_checkpoint(tmp_path / "m.pt")
    assert v2 == vocab and payload["epoch"] == 3 and payload["config"] == {"name": "x"}
    assert loaded.options == model.options
    x = torch.randn(2, 7, 3)
    lengths = torch.tensor([7, 5])
    assert torch.equal(loaded.eval()(x, lengths)[0], model.eval()(x, lengths)[0])
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
