// The train pages (not built yet).
"use strict";
