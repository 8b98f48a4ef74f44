{
  "targets": [
    {
      "target_name": "relp_native",
      "sources": ["relp_native.cc"],
      "include_dirs": ["/usr/include/x86_64-linux-gnu", "/usr/include/openblas"],
      "cflags_cc": ["-O3", "-march=native", "-fno-fast-math", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-std=c++17", "-fopenmp"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["-lopenblas", "-fopenmp"]
    }
  ]
}
