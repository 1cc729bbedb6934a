"""benchmarks.floors and the comparisons built on it, against hand-computed values."""

import pytest

import keras_gc
from benchmarks import cost, floors, workloads


def test_compiled_floor_is_one_extra_read_of_each_centralized_gradient():
    # A bare step of 3,000 bytes; GC on kernels of 120 bytes.
    assert floors.compiled_floor(3000.0, 120.0) == 3120.0
    assert floors.excess(3151.2, 3120.0) == pytest.approx(0.01)


def test_flops_floor_is_an_addition_and_a_subtraction_per_element():
    assert floors.flops_floor(1000.0, 30.0) == 1060.0


def test_unfused_pass_floor_is_a_read_then_a_read_and_a_write():
    # 3 MB read or written at 2 GB/s of copy (1 GB/s read + 1 GB/s write):
    # 1.5 copies of 1 MB, 0.75 ms.
    assert floors.pass_floor_seconds(1e6, 2e9) == pytest.approx(7.5e-4)


def test_backend_floor_is_one_and_a_half_of_its_cheapest_op_on_the_kernels():
    # `g * 2` on 4 MB in 2 ms; GC on 1 MB of them: 1.5 x 0.5 ms.
    assert floors.backend_floor_seconds(1e6, 4e6, 2e-3) == pytest.approx(7.5e-4)


def test_fixed_cost_per_kernel_is_the_time_over_the_floor_per_kernel():
    assert floors.per_kernel_seconds(0.7e-3, 0.1e-3, 60) == pytest.approx(1e-5)
    # Beating a one-threaded copy with several threads gives a negative cost.
    assert floors.per_kernel_seconds(0.5e-3, 0.6e-3, 10) == pytest.approx(-1e-5)


@pytest.mark.parametrize(
    ("value", "expected"), [(1.0, "met"), (1.25, "met"), (1.2501, "missed")]
)
def test_at_most_includes_the_target(value, expected):
    assert floors.at_most(value, 1.25) == expected


def test_sizes_of_shapes():
    # 3*3*16*32 + 512*1 elements, float32.
    assert floors.sizes([(3, 3, 16, 32), (512, 1)]) == (5120, 20480)
    assert floors.sizes([(4,)], itemsize=2) == (4, 8)


@pytest.mark.parametrize(
    ("gc", "excess", "verdict"),
    [(3131.2, 0.0035897, "met"), (3150.0, 0.0096154, "met"), (3182.4, 0.02, "missed")],
)
def test_compiled_comparison(gc, excess, verdict):
    row = cost.compare(3000.0, gc, 3120.0, floors.COMPILED_EXCESS_TARGET)
    assert row["ratio"] == pytest.approx(gc / 3000)
    assert row["floor_ratio"] == pytest.approx(1.04)
    assert row["excess"] == pytest.approx(excess, abs=1e-6)
    assert row["verdict"] == verdict
    assert cost.compare(3000.0, gc, 3120.0)["verdict"] is None


@pytest.mark.parametrize(
    ("model", "elements"),
    [
        # 60 Dense(64) kernels of 64 x 64, and the 64 x 10 head.
        (workloads.dense_stack, 60 * 64 * 64 + 64 * 10),
        # 3x3 convolutions 3->16->32->64; 150 -> 148 -> 74 -> 72 -> 36 -> 34
        # -> 17, so Dense(512) sees 17 * 17 * 64 inputs; then the 512 x 1 head.
        (
            lambda: workloads.horse_or_human_cnn(150),
            27 * 16 + 144 * 32 + 288 * 64 + 17 * 17 * 64 * 512 + 512,
        ),
    ],
    ids=["dense60", "hoh150"],
)
def test_floors_count_the_kernels_a_hand_count_gives(model, elements):
    shapes = [e.shape for e in keras_gc.plan(model()) if e.centralized]
    assert floors.sizes(shapes) == (elements, 4 * elements)


def test_launched_ops_count_the_entry_computations_work():
    # Two fusions and a dot launch work; parameters, a constant, a bitcast,
    # tuples and the fused computation's own instructions do not count.
    hlo = """HloModule jit_step

%fused_computation (param_0: f32[4,3]) -> f32[4,3] {
  %param_0 = f32[4,3]{1,0} parameter(0)
  ROOT %negate.1 = f32[4,3]{1,0} negate(%param_0)
}

ENTRY %main.9 (Arg_0.1: f32[4,3]) -> (f32[4,3], f32[1,3]) {
  %Arg_0.1 = f32[4,3]{1,0} parameter(0)
  %constant.2 = f32[4]{0} constant({1, 1, 1, 1})
  %fusion.3 = f32[4,3]{1,0} fusion(%Arg_0.1), kind=kLoop, calls=%fused_computation
  %bitcast.4 = f32[1,4]{1,0} bitcast(%constant.2)
  %dot.5 = f32[1,3]{1,0} dot(%bitcast.4, %fusion.3), lhs_contracting_dims={1}
  %fusion.6 = (f32[4,3]{1,0}, f32[4,3]{1,0}) fusion(%fusion.3), kind=kLoop
  %get-tuple-element.7 = f32[4,3]{1,0} get-tuple-element(%fusion.6), index=0
  ROOT %tuple.8 = (f32[4,3]{1,0}, f32[1,3]{1,0}) tuple(%get-tuple-element.7, %dot.5)
}
"""
    assert cost.launched_ops(hlo) == 3
    with pytest.raises(ValueError, match="No ENTRY"):
        cost.launched_ops("HloModule empty")
