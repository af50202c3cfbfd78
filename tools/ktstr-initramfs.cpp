// ktstr-initramfs: build and inspect the guest's initramfs (plumbing under ktstr-vmm).
#include <cstdio>

#include "ktstr/cli.h"
#include "ktstr/initramfs.h"
#include "ktstr/json.h"

using namespace ktstr;
using namespace ktstr::initramfs;

namespace {

const std::vector<cli::Option> BUILD_OPTIONS = {
    {"output", 'o', "FILE", "write the archive here (required)"},
    {"init", 0, "PATH", "the program packed as /init (default: the ktstr-guest agent)"},
    {"busybox", 0, "PATH", "busybox packed as /bin/busybox (default /bin/busybox when present)"},
    {"no-busybox", 0, "", "do not pack busybox"},
    {"include", 'i', "HOST[:GUEST]", "add a file (default GUEST /include-files/NAME); ELF files bring their libraries", true},
    {"exec", 'e', "CMD", "add the suffix of an exec job running CMD (else: base only)"},
    {"compress", 0, "lz4|none", "compression (default lz4, the kernel's legacy LZ4 format)"},
    {"cache-dir", 0, "DIR", "directory of the cached archives (default $KTSTR_CACHE_DIR/.initramfs, $XDG_CACHE_HOME/ktstr/initramfs, ~/.cache/ktstr/initramfs)"},
    {"no-cache", 0, "", "build from scratch and store nothing"},
};

const char *const HELP_HEAD =
    "Usage: ktstr-initramfs build -o FILE [options]\n"
    "       ktstr-initramfs closure BINARY\n"
    "       ktstr-initramfs list FILE\n"
    "\n"
    "Builds the guest initramfs the way ktstr-vmm does (cpio newc, optionally in the\n"
    "kernel's legacy LZ4 format), resolves shared-library closures, lists archives.\n"
    "Output: one JSON document on stdout (list: JSON lines).\n"
    "\n"
    "Verbs:\n"
    "  build     build the base archive (agent, busybox, includes, their libraries) and,\n"
    "            with --exec, the job suffix; prints {\"schema\":\"ktstr.initramfs/1\",...}\n"
    "            with the sizes, entry count, cache hit/miss and build_ms\n"
    "  closure   the interpreter and libraries BINARY needs, as the guest will see them\n"
    "  list      the entries of an archive (LZ4 legacy or plain cpio)\n"
    "\n"
    "build options:\n";

int cmd_build(const std::vector<std::string> &tokens) {
    cli::Args a = cli::parse(tokens, BUILD_OPTIONS);
    if (!a.positional().empty()) fail(ErrorKind::usage, "build: unexpected argument '", a.positional()[0], "'");
    std::string out = a.get("output");
    if (out.empty()) fail(ErrorKind::usage, "build: --output FILE is required");
    std::vector<Include> includes;
    for (const std::string &s : a.all("include")) includes.push_back(parse_include(s));
    std::string busybox = a.has("no-busybox") ? "" : a.get("busybox", "/bin/busybox");
    BaseSpec base = agent_base(includes, a.get("init"), busybox);
    if (a.has("busybox") && base.busybox.empty())
        fail(ErrorKind::input, "--busybox '", a.get("busybox"), "' does not exist");
    BuildOptions opt;
    opt.compression = parse_compression(a.get("compress", "lz4"));
    if (!a.has("no-cache")) opt.cache_dir = a.get("cache-dir", default_cache_dir());

    auto t0 = Clock::now();
    BootImage img;
    img.base = build_base(base, opt);
    if (a.has("exec")) {
        JobSpec job;
        job.exec_cmd = a.get("exec");
        img.suffix = build_suffix(job_suffix_files(job), opt.compression);
    }
    double build_ms = seconds_since(t0) * 1000;
    img.write(out);

    ojson doc = make_doc("initramfs", 1);
    doc["output"] = out;
    doc["bytes"] = img.size();
    doc["base_bytes"] = img.base.bytes().size();
    doc["uncompressed_base_bytes"] = img.base.uncompressed_size;
    doc["entries"] = img.base.entries;
    doc["compression"] = opt.compression == Compression::lz4 ? "lz4" : "none";
    doc["cache"] = opt.cache_dir.empty() ? "off" : img.base.cache_hit ? "hit" : "miss";
    doc["cache_path"] = img.base.cache_path.empty() ? ojson(nullptr) : ojson(img.base.cache_path);
    doc["key"] = img.base.key;
    doc["build_ms"] = build_ms;
    emit_line(doc);
    return 0;
}

int cmd_closure(const std::vector<std::string> &args) {
    if (args.size() != 1) fail(ErrorKind::usage, "closure: expected one BINARY");
    Resolver r;
    ojson doc = make_doc("closure", 1);
    doc["binary"] = args[0];
    ojson files = ojson::array();
    for (const ClosureFile &f : r.closure(args[0])) {
        ojson o;
        o["canonical"] = f.canonical;
        o["paths"] = f.paths;
        files.push_back(o);
    }
    doc["files"] = files;
    emit_line(doc);
    return 0;
}

int cmd_list(const std::vector<std::string> &args) {
    if (args.size() != 1) fail(ErrorKind::usage, "list: expected one FILE");
    std::string data = read_file(args[0]);
    if (is_lz4_legacy(data)) data = lz4_legacy_decompress(data);
    for (const CpioEntry &e : read_cpio(data)) {
        ojson o;
        o["name"] = e.name;
        o["mode"] = cat("0", std::oct, e.mode);
        o["size"] = e.data.size();
        o["ino"] = e.ino;
        o["nlink"] = e.nlink;
        if ((e.mode & 0170000) == 0120000) o["target"] = e.data;
        emit_line(o);
    }
    return 0;
}

} // namespace

int main(int argc, char **argv) {
    std::string help = std::string(HELP_HEAD) + cli::format_options(BUILD_OPTIONS) + "\n" + cli::EXIT_CODES_HELP;
    return cli::tool_main(argc, argv, {"ktstr-initramfs", help}, [](const std::vector<std::string> &args) {
        return cli::dispatch("ktstr-initramfs", args,
                             {{"build", "build an initramfs", cmd_build},
                              {"closure", "print a binary's library closure", cmd_closure},
                              {"list", "list an archive's entries", cmd_list}});
    });
}
