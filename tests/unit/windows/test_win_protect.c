#include "harness.h"
#include "win_fixture.h"
HVI_TEST_MAIN()
