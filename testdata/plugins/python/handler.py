"""Test plugin for handler_linux_test.go."""


def run(input, ctx):
    ctx.log("info", "adding %d and %d" % (input["a"], input["b"]), {"n": 2})
    ctx.progress(50, "half way")
    return {"sum": input["a"] + input["b"], "pluginRoot": ctx.pluginRoot}


def fail(input, ctx):
    err = ValueError("boom")
    err.code = "E_X"
    raise err


def noop(input, ctx):
    return {"ok": 1}


def hog(input, ctx):
    keep = []
    while True:
        keep.append(b"x" * (1 << 20))


def exit3(input, ctx):
    print("leaving with 3")
    import sys

    sys.exit(3)


def cli(ctx, argv, flags):
    print("argv=%s flags=%s" % (argv, sorted(flags.items())))
    return 0
