// kube-router: the node agent. Everything happens in app::Main (src/app/app.cc).
#include "app.h"

int main(int argc, char** argv) { return kr::app::Main(argc, argv); }
