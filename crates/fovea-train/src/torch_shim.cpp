// The libtorch calls fovea-train needs that the tch crate does not expose.
// Every function catches C++ exceptions and returns the message (malloc'd,
// freed by the caller with fovea_free_error) instead of unwinding into Rust.
#include <torch/torch.h>
#include <torch/csrc/jit/serialization/unpickler.h>
#include <caffe2/serialize/inline_container.h>
#include <ATen/autocast_mode.h>

#include <algorithm>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

static char *copy_message(const char *what) {
    size_t n = std::strlen(what);
    char *out = static_cast<char *>(std::malloc(n + 1));
    if (out) std::memcpy(out, what, n + 1);
    return out;
}

#define FOVEA_PROTECT(...)                                      \
    try {                                                       \
        __VA_ARGS__;                                            \
        return nullptr;                                         \
    } catch (const std::exception &e) {                         \
        return copy_message(e.what());                          \
    } catch (...) {                                             \
        return copy_message("unknown C++ exception");           \
    }

extern "C" {

void fovea_free_error(char *error) { std::free(error); }

// Turns libtorch's autocast on (bf16: convolutions and matrix products in
// bfloat16, fp32 master weights, numerically sensitive ops in fp32) or off,
// for the CPU or for CUDA. Leaving it clears the cast cache, as
// torch.autocast's __exit__ does.
char *fovea_autocast_bf16(int cuda, int enabled) {
    FOVEA_PROTECT({
        at::DeviceType device = cuda ? at::kCUDA : at::kCPU;
        at::autocast::set_autocast_dtype(device, at::kBFloat16);
        at::autocast::set_autocast_enabled(device, enabled != 0);
        if (!enabled) at::autocast::clear_cache();
    })
}

// `tensor.contiguous(memory_format=torch.channels_last)`.
char *fovea_channels_last(torch::Tensor *input, torch::Tensor **output) {
    FOVEA_PROTECT({
        *output = new torch::Tensor(input->contiguous(at::MemoryFormat::ChannelsLast));
    })
}

// Reads a `torch.save(state_dict)` file and calls `each` with every
// string-keyed tensor (other entries, e.g. metadata, are skipped).
char *fovea_load_state_dict(const char *path, void *context,
                            void (*each)(void *, const char *, torch::Tensor *)) {
    FOVEA_PROTECT({
        caffe2::serialize::PyTorchStreamReader archive{std::string(path)};
        auto [data, size] = archive.getRecord("data.pkl");
        std::string pickle(static_cast<const char *>(data.get()), size);
        // libtorch's unpickler turns every `collections.OrderedDict()` into
        // None (it expects one only as a tensor's empty backward hooks), so
        // the pickle is rewritten around the top-level one:
        //  - GLOBAL OrderedDict, BINPUT 0, EMPTY_TUPLE, REDUCE becomes
        //    GLOBAL OrderedDict, BINPUT 0, EMPTY_DICT: the class stays memoised
        //    for the tensors' hooks and a plain dict receives the items;
        //  - the dict's `_metadata` attribute, pickled after the items as a
        //    BUILD state (EMPTY_DICT, a memo put, BINUNICODE '_metadata', ...),
        //    is cut off: fovea does not need it and BUILD cannot apply it;
        //  - TUPLE2 then pairs the class left on the stack with the dict.
        const std::string ordered_dict("\x80\x02" "ccollections\nOrderedDict\nq\x00)R", 31);
        if (pickle.compare(0, ordered_dict.size(), ordered_dict) != 0)
            throw std::runtime_error("not a torch.save(state_dict) pickle (no OrderedDict at its start)");
        pickle.replace(ordered_dict.size() - 2, 2, "}");
        const std::string metadata_key("X\x09\x00\x00\x00_metadata", 14);
        size_t end = pickle.size() - 1;  // the final STOP
        size_t key = pickle.find(metadata_key);
        if (key != std::string::npos) {
            for (size_t put : {size_t(2), size_t(5)}) {  // BINPUT n | LONG_BINPUT nnnn
                if (key >= put + 1 && pickle[key - put - 1] == '}' &&
                    (pickle[key - put] == 'q' || pickle[key - put] == 'r')) {
                    end = key - put - 1;
                    break;
                }
            }
        }
        pickle.resize(end);
        pickle += "\x86.";
        size_t position = 0;
        auto read = [&](char *buffer, size_t n) {
            n = std::min(n, pickle.size() - position);
            std::memcpy(buffer, pickle.data() + position, n);
            position += n;
            return n;
        };
        auto read_record = [&](const std::string &name) {
            return std::get<0>(archive.getRecord("data/" + name));
        };
        torch::jit::Unpickler unpickler(read, nullptr, nullptr, read_record, c10::Device(c10::kCPU));
        c10::IValue pair = unpickler.parse_ivalue();
        if (!pair.isTuple() || pair.toTupleRef().elements().size() != 2 ||
            !pair.toTupleRef().elements()[1].isGenericDict())
            throw std::runtime_error("not a state_dict (the pickle holds no dict)");
        for (const auto &entry : pair.toTupleRef().elements()[1].toGenericDict()) {
            if (!entry.key().isString() || !entry.value().isTensor()) continue;
            each(context, entry.key().toStringRef().c_str(),
                 new torch::Tensor(entry.value().toTensor()));
        }
    })
}

}
