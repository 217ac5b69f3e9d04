// The translation unit CMake builds tests' shared precompiled header with (kr_test_pch in
// tests/CMakeLists.txt); it has no code of its own.
