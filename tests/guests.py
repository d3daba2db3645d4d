"""WebAssembly guests for the tests, with a name section (function names are real words)."""

# outer -> middle -> inner, where inner spins `n` times: inner must dominate the samples.
CHAIN = """
(module $chain
  (func $inner (param $n i64) (result i64)
    (local $i i64)
    (loop $spin
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br_if $spin (i64.lt_u (local.get $i) (local.get $n))))
    (local.get $i))
  (func $middle (param $n i64) (result i64)
    (call $inner (local.get $n)))
  (func $outer (export "run") (param $n i64) (result i64)
    (call $middle (local.get $n)))
  ;; Spins like `run`, then traps.
  (func $doomed (export "run_then_trap") (param $n i64)
    (drop (call $middle (local.get $n)))
    unreachable))
"""

# A module with no name section.
ANONYMOUS = '(module (func (export "run")))'

# A module that names itself.
NAMED = '(module $calculator (func $add (export "run")))'

# A guest that calls host functions: `work` alternates a host call with a wasm spin; `many` makes many
# tiny host calls; `reenter` calls env.call_back, which the host implements by calling `inner` back.
HOST_CALLS = """
(module $app
  (import "env" "slow" (func $slow (param i32)))
  (import "env" "tiny" (func $tiny (param i32) (result i32)))
  (import "env" "call_back" (func $call_back (param i64)))
  (func $spin (param $n i64) (local $i i64)
    (loop $again
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br_if $again (i64.lt_u (local.get $i) (local.get $n)))))
  (func $work (export "work") (param $calls i32) (param $n i64) (local $k i32)
    (loop $again
      (call $slow (local.get $k))
      (call $spin (local.get $n))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $k) (local.get $calls)))))
  (func $many (export "many") (param $calls i32) (result i32) (local $k i32) (local $sum i32)
    (loop $again
      (local.set $sum (i32.add (local.get $sum) (call $tiny (local.get $k))))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $k) (local.get $calls))))
    (local.get $sum))
  (func $inner (export "inner") (param $n i64)
    (call $spin (local.get $n))
    (call $slow (i32.const 0)))
  (func $reenter (export "reenter") (param $n i64)
    (call $call_back (local.get $n))))
"""

# `main` calls `eval`, and `eval` and `apply` call each other until `depth` frames are on the stack, as an
# interpreter's evaluator does; then `spin` loops at the bottom.
DEEP = """
(module $deep
  (func $spin (param $n i64) (local $i i64)
    (loop $again
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br_if $again (i64.lt_u (local.get $i) (local.get $n)))))
  (func $eval (param $depth i32) (param $n i64)
    (if (i32.gt_u (local.get $depth) (i32.const 1))
      (then (call $apply (i32.sub (local.get $depth) (i32.const 1)) (local.get $n)))
      (else (call $spin (local.get $n)))))
  (func $apply (param $depth i32) (param $n i64)
    (if (i32.gt_u (local.get $depth) (i32.const 1))
      (then (call $eval (i32.sub (local.get $depth) (i32.const 1)) (local.get $n)))
      (else (call $spin (local.get $n)))))
  (func $main (export "run") (param $depth i32) (param $n i64)
    (call $eval (local.get $depth) (local.get $n))))
"""
