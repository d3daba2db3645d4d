;; The bundled example guest: a CPU-bound program with a name section, so that the
;; profile shows real function names. `run(scale)` takes about 0.1 s per unit of scale.
(module $example
  ;; Naive recursion: deep, nested stacks.
  (func $fibonacci (param $n i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else
        (i32.add
          (call $fibonacci (i32.sub (local.get $n) (i32.const 1)))
          (call $fibonacci (i32.sub (local.get $n) (i32.const 2)))))))

  ;; A few small functions called from a hot loop.
  (func $xorshift (param $x i32) (result i32)
    (local.set $x (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 13))))
    (local.set $x (i32.xor (local.get $x) (i32.shr_u (local.get $x) (i32.const 17))))
    (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 5))))

  (func $rotate (param $x i32) (result i32)
    (i32.rotl (local.get $x) (i32.const 7)))

  (func $mix (param $x i32) (result i32)
    (call $rotate (call $xorshift (local.get $x))))

  (func $checksum (param $rounds i32) (result i32)
    (local $x i32)
    (local.set $x (i32.const 2463534242))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $rounds)))
        (local.set $x (call $mix (local.get $x)))
        (local.set $rounds (i32.sub (local.get $rounds) (i32.const 1)))
        (br $next)))
    (local.get $x))

  ;; One unit of work: recursion and the loop in about equal measure.
  (func $step (result i32)
    (i32.add (call $fibonacci (i32.const 27)) (call $checksum (i32.const 16000000))))

  (func $run (export "run") (param $scale i32) (result i32)
    (local $total i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $scale)))
        (local.set $total (i32.add (local.get $total) (call $step)))
        (local.set $scale (i32.sub (local.get $scale) (i32.const 1)))
        (br $next)))
    (local.get $total)))
