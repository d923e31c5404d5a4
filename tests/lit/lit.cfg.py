# lit configuration of optjit's golden tests: the optjit tool's text in, text out; in
# codegen/, `optjit compile` in, LLVM IR, PTX and host assembly out (PTX assembled with ptxas
# where CUDA's toolkit is installed).
import os
import platform

import lit.formats

config.name = "optjit"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".test"]
config.excludes = ["Inputs", "lit.cfg.py", "lit.site.cfg.py"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.optjit_binary_dir, "tests", "lit")

# Malformed input must never hang: %exit kills a command after a few seconds and fails
# (lit's own per-test timeout needs psutil, which is not always installed).

def tool_dir():
    # FileCheck and not come with llvm-19-tools; CMake's LLVM may point elsewhere.
    for d in (config.llvm_tools_dir, "/usr/lib/llvm-19/bin"):
        if d and os.path.exists(os.path.join(d, "FileCheck")):
            return d
    lit_config.fatal("FileCheck not found (install llvm-19-tools)")

tools = tool_dir()
config.substitutions.append(("%optjit", os.path.join(config.optjit_binary_dir, "optjit")))
config.substitutions.append(("%examples", os.path.join(config.optjit_source_dir, "examples")))
config.substitutions.append(("%inputs", os.path.join(config.test_source_root, "Inputs")))
config.substitutions.append(("%python", config.python_executable))
# %exit N CMD...: runs CMD and passes only if it exits with exactly N within its time limit
# (`not` accepts any failure, a crash included).
config.substitutions.append(("%exit", config.python_executable + " " + os.path.join(config.test_source_root, "Inputs", "exit.py")))
# %gen KIND FILE: writes a generated (large or binary) input; see Inputs/gen.py.
config.substitutions.append(("%gen", config.python_executable + " " + os.path.join(config.test_source_root, "Inputs", "gen.py")))
# Whole words only, so "not" inside a path or an argument is left alone.
config.substitutions.append((r"(?<![\w/%.-])FileCheck(?![\w/.-])", os.path.join(tools, "FileCheck")))
config.substitutions.append((r"(?<![\w/%.-])split-file(?![\w/.-])", os.path.join(tools, "split-file")))
config.substitutions.append((r"(?<![\w/%.-])not(?![\w/.-])", os.path.join(tools, "not")))

# ptxas validates PTX without a GPU: tests that need it say REQUIRES: ptxas.
ptxas = os.environ.get("OPTJIT_PTXAS", "/usr/local/cuda/bin/ptxas")
if os.path.exists(ptxas) and os.access(ptxas, os.X_OK):
    config.available_features.add("ptxas")
    config.substitutions.append(("%ptxas", ptxas))
else:
    lit_config.note("ptxas not found at %s: PTX assembly tests are unsupported" % ptxas)

# Host assembly tests look for x86 vector instructions.
if platform.machine().lower() in ("x86_64", "amd64"):
    config.available_features.add("x86_64")

config.environment["LC_ALL"] = "C"
# A compile must not write dump folders or log.
for name in ("OPTJIT_DUMP_DIR", "OPTJIT_DEBUG"):
    config.environment.pop(name, None)
