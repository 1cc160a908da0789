#include "ccurl.h"

CURLcode ccurl_setopt_string(CURL *h, CURLoption opt, const char *value) { return curl_easy_setopt(h, opt, value); }
CURLcode ccurl_setopt_long(CURL *h, CURLoption opt, long value) { return curl_easy_setopt(h, opt, value); }
CURLcode ccurl_setopt_off(CURL *h, CURLoption opt, curl_off_t value) { return curl_easy_setopt(h, opt, value); }
CURLcode ccurl_setopt_ptr(CURL *h, CURLoption opt, void *value) { return curl_easy_setopt(h, opt, value); }
CURLcode ccurl_setopt_fn(CURL *h, CURLoption opt, ccurl_data_fn fn) { return curl_easy_setopt(h, opt, fn); }
CURLcode ccurl_setopt_seek_fn(CURL *h, ccurl_seek_fn fn) { return curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, fn); }
CURLcode ccurl_getinfo_long(CURL *h, CURLINFO info, long *out) { return curl_easy_getinfo(h, info, out); }
CURLcode ccurl_getinfo_off(CURL *h, CURLINFO info, curl_off_t *out) { return curl_easy_getinfo(h, info, out); }
