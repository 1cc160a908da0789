// Typed wrappers for libcurl's variadic curl_easy_setopt / curl_easy_getinfo,
// which Swift cannot call directly.
#ifndef CCURL_H
#define CCURL_H
#include <curl/curl.h>

typedef size_t (*ccurl_data_fn)(char *ptr, size_t size, size_t nmemb, void *userdata);
typedef int (*ccurl_seek_fn)(void *userdata, curl_off_t offset, int origin);

CURLcode ccurl_setopt_string(CURL *h, CURLoption opt, const char *value);
CURLcode ccurl_setopt_long(CURL *h, CURLoption opt, long value);
CURLcode ccurl_setopt_off(CURL *h, CURLoption opt, curl_off_t value);
CURLcode ccurl_setopt_ptr(CURL *h, CURLoption opt, void *value);
CURLcode ccurl_setopt_fn(CURL *h, CURLoption opt, ccurl_data_fn fn);
CURLcode ccurl_setopt_seek_fn(CURL *h, ccurl_seek_fn fn);
CURLcode ccurl_getinfo_long(CURL *h, CURLINFO info, long *out);
CURLcode ccurl_getinfo_off(CURL *h, CURLINFO info, curl_off_t *out);
#endif
