;; A reducer over the JSON-in/JSON-out ABI of docs/design/jsworker.md ("WebAssembly"):
;; reduce([state, event]) counts the events and the bytes of their JSON texts,
;; state {"n":N,"bytes":B} (null before the first event); key([event]) answers the event's
;; JSON text as it came; ok() answers 1. Used by tests/unit/logic_js_test.c and
;; tests/integration/test_logic_js.py.
(module
  (memory (export "memory") 1)
  (data (i32.const 0) "{\"n\":")
  (data (i32.const 8) ",\"bytes\":")
  (data (i32.const 24) "}")
  (data (i32.const 32) "1")
  (global $pos (mut i32) (i32.const 0))  ;; where $num reads
  (global $out (mut i32) (i32.const 0))  ;; where $put writes

  ;; The host calls alloc once before each entry call: a bump allocator may start over here.
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

  ;; Reads the next run of decimal digits from $pos (skipping what is not a digit) before end.
  (func $num (param $end i32) (result i32)
    (local $v i32) (local $c i32)
    (block $found
      (loop $skip
        (br_if $found (i32.ge_u (global.get $pos) (local.get $end)))
        (local.set $c (i32.load8_u (global.get $pos)))
        (br_if $found (i32.lt_u (i32.sub (local.get $c) (i32.const 48)) (i32.const 10)))
        (global.set $pos (i32.add (global.get $pos) (i32.const 1)))
        (br $skip)))
    (block $done
      (loop $digits
        (br_if $done (i32.ge_u (global.get $pos) (local.get $end)))
        (local.set $c (i32.sub (i32.load8_u (global.get $pos)) (i32.const 48)))
        (br_if $done (i32.ge_u (local.get $c) (i32.const 10)))
        (local.set $v (i32.add (i32.mul (local.get $v) (i32.const 10)) (local.get $c)))
        (global.set $pos (i32.add (global.get $pos) (i32.const 1)))
        (br $digits)))
    (local.get $v))

  ;; Copies n bytes from src to $out.
  (func $put (param $src i32) (param $n i32)
    (block $done
      (loop $copy
        (br_if $done (i32.eqz (local.get $n)))
        (i32.store8 (global.get $out) (i32.load8_u (local.get $src)))
        (global.set $out (i32.add (global.get $out) (i32.const 1)))
        (local.set $src (i32.add (local.get $src) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $copy))))

  ;; Writes v in decimal to $out.
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

  ;; (ptr << 32) | len of the result that began at start and ends at $out.
  (func $answer (param $start i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $start)) (i64.const 32))
            (i64.extend_i32_u (i32.sub (global.get $out) (local.get $start)))))

  (func (export "reduce") (param $p i32) (param $len i32) (result i64)
    (local $end i32) (local $ev i32) (local $n i32) (local $bytes i32)
    (local.set $end (i32.add (local.get $p) (local.get $len)))
    (if (i32.eq (i32.load8_u offset=1 (local.get $p)) (i32.const 110)) ;; [null,...
      (then (local.set $ev (i32.add (local.get $p) (i32.const 6))))
      (else
        (global.set $pos (local.get $p))
        (local.set $n (call $num (local.get $end)))
        (local.set $bytes (call $num (local.get $end)))
        (local.set $ev (i32.add (global.get $pos) (i32.const 2))))) ;; past "},"
    (local.set $n (i32.add (local.get $n) (i32.const 1)))
    (local.set $bytes (i32.add (local.get $bytes)
                               (i32.sub (i32.sub (local.get $end) (i32.const 1)) (local.get $ev))))
    (global.set $out (local.get $end))
    (call $put (i32.const 0) (i32.const 5))
    (call $put_num (local.get $n))
    (call $put (i32.const 8) (i32.const 9))
    (call $put_num (local.get $bytes))
    (call $put (i32.const 24) (i32.const 1))
    (call $answer (local.get $end)))

  (func (export "key") (param $p i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (i32.add (local.get $p) (i32.const 1))) (i64.const 32))
            (i64.extend_i32_u (i32.sub (local.get $len) (i32.const 2)))))

  (func (export "ok") (param i32 i32) (result i64)
    (i64.const 0x2000000001)))
