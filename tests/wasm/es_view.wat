;; An EvidentSource state view over the JSON-in/JSON-out ABI of docs/design/jsworker.md
;; ("WebAssembly"): evolve([state, event, params]) counts the events, state {"n":N} (null before
;; the first). Used by tests/integration/evidentsource/test_views.py.
(module
  (memory (export "memory") 1)
  (data (i32.const 0) "{\"n\":")
  (data (i32.const 8) "}")
  (global $out (mut i32) (i32.const 0))

  ;; The argument goes at 1024; the result is written after it.
  (func (export "alloc") (param $len i32) (result i32)
    (local $need i32)
    (local.set $need (i32.add (i32.const 1088) (i32.mul (local.get $len) (i32.const 2))))
    (if (i32.gt_u (local.get $need) (i32.shl (memory.size) (i32.const 16)))
      (then
        (if (i32.eq (memory.grow (i32.sub (i32.shr_u (i32.add (local.get $need) (i32.const 65535))
                                                     (i32.const 16))
                                          (memory.size)))
                    (i32.const -1))
          (then unreachable))))
    (i32.const 1024))

  ;; The first run of decimal digits in [p, end).
  (func $num (param $p i32) (param $end i32) (result i32)
    (local $v i32) (local $c i32)
    (block $found
      (loop $skip
        (br_if $found (i32.ge_u (local.get $p) (local.get $end)))
        (br_if $found (i32.lt_u (i32.sub (i32.load8_u (local.get $p)) (i32.const 48))
                                (i32.const 10)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $skip)))
    (block $done
      (loop $digits
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $c (i32.sub (i32.load8_u (local.get $p)) (i32.const 48)))
        (br_if $done (i32.ge_u (local.get $c) (i32.const 10)))
        (local.set $v (i32.add (i32.mul (local.get $v) (i32.const 10)) (local.get $c)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $digits)))
    (local.get $v))

  (func $put (param $src i32) (param $n i32)
    (block $done
      (loop $copy
        (br_if $done (i32.eqz (local.get $n)))
        (i32.store8 (global.get $out) (i32.load8_u (local.get $src)))
        (global.set $out (i32.add (global.get $out) (i32.const 1)))
        (local.set $src (i32.add (local.get $src) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $copy))))

  (func $put_num (param $v i32)
    (local $d i32)
    (local.set $d (i32.const 1))
    (block $big
      (loop $widen
        (br_if $big (i32.lt_u (i32.div_u (local.get $v) (local.get $d)) (i32.const 10)))
        (local.set $d (i32.mul (local.get $d) (i32.const 10)))
        (br $widen)))
    (block $done
      (loop $digit
        (br_if $done (i32.eqz (local.get $d)))
        (i32.store8 (global.get $out)
                    (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $v) (local.get $d))
                                                       (i32.const 10))))
        (global.set $out (i32.add (global.get $out) (i32.const 1)))
        (local.set $d (i32.div_u (local.get $d) (i32.const 10)))
        (br $digit))))

  (func (export "evolve") (param $p i32) (param $len i32) (result i64)
    (local $end i32) (local $n i32) (local $start i32)
    (local.set $end (i32.add (local.get $p) (local.get $len)))
    (if (i32.ne (i32.load8_u offset=1 (local.get $p)) (i32.const 110)) ;; not [null,...
      (then (local.set $n (call $num (local.get $p) (local.get $end)))))
    (local.set $start (local.get $end))
    (global.set $out (local.get $end))
    (call $put (i32.const 0) (i32.const 5))
    (call $put_num (i32.add (local.get $n) (i32.const 1)))
    (call $put (i32.const 8) (i32.const 1))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $start)) (i64.const 32))
            (i64.extend_i32_u (i32.sub (global.get $out) (local.get $start))))))
