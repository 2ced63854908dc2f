// The data pages (not built yet).
"use strict";
