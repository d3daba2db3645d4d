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
