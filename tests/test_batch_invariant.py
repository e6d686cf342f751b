"""Row-chunked linear layers (`model_adapters/batch_invariant.py`) on hand-made layers."""

import torch

from lm_eval_trust.model_adapters.batch_invariant import (
    LARGER,
    ROWS,
    RowChunked,
    chunk_rows,
    in_rows,
    invariant,
    larger_sizes,
)


def by_row_count(x, weight):
    """A kernel picked by the call's row count, as oneDNN's: calls of other sizes round differently."""
    return x @ weight.T + (0.0 if x.shape[0] == ROWS else 1e-3)


def by_large_calls(x, weight):
    """As oneDNN's on an AMX CPU: 32-row calls and calls of 1,024 rows or more agree, others do not."""
    return x @ weight.T + (0.0 if x.shape[0] == ROWS or x.shape[0] >= 1024 else 1e-3)


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


def test_calls_take_the_larger_sizes_first_then_rows_rows_and_never_none():
    layer = Linear(by_large_calls)
    chunked = RowChunked(layer.quant_method, (4096, 1024))
    for rows, calls in (
        (4096 + 1024 + 70, [4096, 1024, ROWS, ROWS, ROWS]),
        (2048, [1024, 1024]),  # whole: no empty call after it (a kernel given no rows divides by 0)
        (1023, [ROWS] * 32),
    ):
        layer.quant_method.rows_seen.clear()
        x = small_integers(rows, 8)
        assert torch.equal(chunked.apply(layer, x), x @ layer.weight.T)
        assert layer.quant_method.rows_seen == calls


def test_a_row_count_kernel_passes_the_check_once_chunked():
    model = torch.nn.Sequential(Linear(by_row_count), Linear(by_row_count, width=16), KVCache())
    found = chunk_rows(model, torch.float32, head_rows=256)
    assert found == {"failing": [], "layers_by_rows_per_call": {ROWS: 2}}  # no larger size agrees
    assert isinstance(model[0].quant_method, RowChunked) and isinstance(model[1].quant_method, RowChunked)
    assert isinstance(model[2].quant_method, Method)  # not a linear layer: left alone
    methods = [m.quant_method for m in model]
    assert chunk_rows(model, torch.float32, head_rows=256)["failing"] == []  # wraps nothing again
    assert [m.quant_method for m in model] == methods


def test_layers_take_the_larger_sizes_their_kernel_agrees_on():
    # (vLLM picks a kernel by the layer's classes and shapes: the third layer's differ.)
    model = torch.nn.Sequential(Linear(by_large_calls), Linear(by_large_calls), Linear(by_row_count, out=7))
    found = chunk_rows(model, torch.float32, head_rows=256)
    large = tuple(size for size in LARGER if size >= 1024)
    assert [m.quant_method.sizes for m in model] == [large, large, ()]
    assert found["layers_by_rows_per_call"] == {ROWS: 3} | dict.fromkeys(large, 2)
    # Layers alike are tried once: the second one's kernel is never called on a larger size.
    assert max(model[1].quant_method.rows_seen) <= ROWS


def test_a_size_that_differs_on_few_rows_is_refused():
    """Two summation orders often round to the same half-precision values: a size is tried on as
    many rows as the largest, so a kernel off on one row in 1,000 still fails."""
    weight = small_integers(5, 8)

    def rarely_off(x):
        y = x @ weight.T
        if x.shape[0] != ROWS:
            y[::1000] += 1e-3
        return y

    generator = torch.Generator().manual_seed(0)
    assert larger_sizes(rarely_off, 8, 4096, generator, torch.float32) == ()
    exact = lambda x: x @ weight.T  # noqa: E731
    assert larger_sizes(exact, 8, 256, generator, torch.float32) == (256, 128, 64)


def test_a_kernel_that_mixes_rows_is_named():
    model = torch.nn.Sequential(Linear(by_row_count), Linear(by_other_rows))
    assert chunk_rows(model, torch.float32, head_rows=256)["failing"] == ["1"]


def test_the_check_fails_a_row_count_kernel_left_unchunked():
    weight, generator = small_integers(5, 8), torch.Generator().manual_seed(0)
    assert not invariant(lambda x: by_row_count(x, weight), 8, generator, torch.float32)
    chunked = lambda x: in_rows(lambda part: by_row_count(part, weight), x)  # noqa: E731
    assert invariant(chunked, 8, generator, torch.float32)
