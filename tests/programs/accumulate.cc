// A C++ guest: a member function of a class template, demangled by Wasmtime, with its hot loop on a known line.
extern "C" int printf(const char *, ...);
extern "C" unsigned long strtoul(const char *, char **, int);

namespace geometry {
template <typename T> struct Accumulator {
    T total{};
    __attribute__((noinline)) void add_squares(unsigned long n) {
        for (unsigned long i = 0; i < n; i++) { /* CPP-LOOP */
            total += static_cast<T>(i) * static_cast<T>(i) / 3;
        }
    }
};
}  // namespace geometry

int main(int argc, char **argv) {
    geometry::Accumulator<double> acc;
    acc.add_squares(argc > 1 ? strtoul(argv[1], nullptr, 10) : 100000000);
    printf("%f\n", acc.total);
    return 0;
}
