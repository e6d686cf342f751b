"""Row-chunked linear layers (`model_adapters/batch_invariant.py`) on hand-made layers."""

import torch

from lm_eval_trust.model_adapters.batch_invariant import ROWS, RowChunked, chunk_rows, in_rows, invariant


def by_row_count(x, weight):
    """A kernel picked by the call's row count, as oneDNN's: calls of other sizes round differently."""
    return x @ weight.T + (0.0 if x.shape[0] == ROWS else 1e-3)


def by_other_rows(x, weight):
    """A row's result depends on the other rows of its call: no chunking makes this invariant."""
    return x @ weight.T + 1e-3 * x.sum()


def small_integers(*shape):
    return torch.randint(-3, 4, shape).float()  # exact products: any difference is the kernel's


class Method:
    """vLLM's quantization method of a layer: `apply(layer, x, bias)` and other attributes."""

    name = "unquantized"

    def __init__(self, kernel):
        self.kernel, self.rows_seen = kernel, []

    def apply(self, layer, x, bias=None):
        self.rows_seen.append(x.shape[0])
        return self.kernel(x, layer.weight)


class Linear(torch.nn.Module):
    def __init__(self, kernel, width=8, out=5):
        super().__init__()
        self.weight = torch.nn.Parameter(small_integers(out, width), requires_grad=False)
        self.input_size_per_partition, self.output_size_per_partition = width, out
        self.quant_method = Method(kernel)


class KVCache(torch.nn.Module):
    """Attention's key/value cache also has a quantization method, but is not a linear layer."""

    def __init__(self):
        super().__init__()
        self.quant_method = Method(by_other_rows)


def test_every_call_has_exactly_rows_rows_and_rows_keep_their_values():
    layer = Linear(by_row_count)
    chunked = RowChunked(layer.quant_method)
    assert chunked.name == "unquantized"  # the method's own attributes pass through
    for rows in (1, ROWS - 1, ROWS, ROWS + 1, 3 * ROWS + 7):
        layer.quant_method.rows_seen.clear()
        x = small_integers(rows, 8)
        y = chunked.apply(layer, x)
        assert y.shape == (rows, 5) and set(layer.quant_method.rows_seen) == {ROWS}
        assert torch.equal(y, x @ layer.weight.T)  # the other row counts' offset never applies


def test_a_row_count_kernel_passes_the_check_once_chunked():
    model = torch.nn.Sequential(Linear(by_row_count), Linear(by_row_count, width=16), KVCache())
    found = chunk_rows(model, torch.float32)
    assert found == {"failing": [], "layers_by_rows_per_call": {ROWS: 2}}
    assert isinstance(model[0].quant_method, RowChunked) and isinstance(model[1].quant_method, RowChunked)
    assert isinstance(model[2].quant_method, Method)  # not a linear layer: left alone
    methods = [m.quant_method for m in model]
    assert chunk_rows(model, torch.float32)["failing"] == []  # wraps nothing again
    assert [m.quant_method for m in model] == methods


def test_a_kernel_that_mixes_rows_is_named():
    model = torch.nn.Sequential(Linear(by_row_count), Linear(by_other_rows))
    assert chunk_rows(model, torch.float32)["failing"] == ["1"]


def test_the_check_fails_a_row_count_kernel_left_unchunked():
    weight, generator = small_integers(5, 8), torch.Generator().manual_seed(0)
    assert not invariant(lambda x: by_row_count(x, weight), 8, generator, torch.float32)
    chunked = lambda x: in_rows(lambda part: by_row_count(part, weight), x)  # noqa: E731
    assert invariant(chunked, 8, generator, torch.float32)
