// The chat pages (not built yet).
"use strict";
