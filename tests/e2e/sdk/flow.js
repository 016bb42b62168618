'use strict'
// Drives one prism over HTTPS with the public Node SDK (`stretchfs-sdk`) and
// prints what it saw as one JSON object; tests/e2e/test_sdk_https.py asserts.
// usage: node flow.js <folder with node_modules> <https prism URL> <user> <password> <file>
var path = require('path')

var args = process.argv.slice(2)
var sdk = require(path.join(args[0], 'node_modules', 'stretchfs-sdk'))
var prismUrl = new URL(args[1])
var host = prismUrl.hostname
var port = +prismUrl.port
var seen = {}

var prism = new sdk.Prism({username: args[2], password: args[3], domain: prismUrl.host,
  prism: {host: host, port: port}})

// A GET through the SDK's own request object (its TLS options), following redirects.
var get = function(client, uri, headers){
  return client.getAsync({url: client.url(uri), headers: headers || {}, json: false,
    encoding: null})
    .spread(function(res, body){
      var redirects = (res.request._redirect.redirects || []).map(function(r){
        return {status: r.statusCode, location: r.redirectUri}
      })
      return {status: res.statusCode, body: body.toString('base64'), redirects: redirects,
        contentRange: res.headers['content-range'] || null}
    })
}

// A POST through the SDK's session client, for calls 3.x has no method for.
var post = function(uri, json){
  return prism.prepare().then(function(client){
    return client.postAsync({url: client.url(uri), json: json})
  }).spread(function(res, body){
    return {status: res.statusCode, body: body}
  })
}

var main = function(){
  var referrer = {Referer: 'https://shop.example/watch'}
  var hash, token, sessionToken
  return prism.connect(host, port)
    .then(function(){ return prism.login() })
    .then(function(session){
      sessionToken = session.token
      seen.login = !!sessionToken
      return prism.contentUpload(args[4])
    })
    .then(function(upload){
      hash = upload.files.file.hash
      seen.upload = upload.files.file
      return prism.contentDetail(hash)
    })
    .then(function(detail){
      seen.detail = detail
      return prism.contentPurchase(hash, 'txt', ['https://shop.example'], 3600)
    })
    .then(function(purchase){
      token = purchase.token
      seen.purchase = purchase
      return get(prism.api, '/' + token + '/hello.txt', referrer)
    })
    .then(function(download){
      seen.download = download
      return get(prism.api, '/' + token + '/hello.txt',
        {Referer: referrer.Referer, Range: 'bytes=2-6'})
    })
    .then(function(ranged){
      seen.range = ranged
      return get(prism.api, '/static/' + hash + '/hello.txt')
    })
    .then(function(staticLink){
      seen.static = staticLink
      return get(prism.api, '/' + token + '/hello.txt', {Referer: 'https://evil.example/x'})
    })
    .then(function(foreign){
      seen.foreign = foreign
      if('function' === typeof prism.contentPurchaseDetail){  // 4.x
        return prism.contentPurchaseDetail(token).then(function(body){
          return {status: 200, body: body}
        })
      }
      return post('/content/purchase/detail', {token: token})
    })
    .then(function(detail){
      seen.purchaseDetail = detail
      return prism.contentPurchaseRemove(token)
    })
    .then(function(removed){
      seen.remove = removed
      return get(prism.api, '/' + token + '/hello.txt', referrer)
    })
    .then(function(afterRemove){
      seen.afterRemove = afterRemove
      return prism.logout()
    })
    .then(function(){
      // The old token, set again by hand, must no longer open the API.
      prism.setSession(sessionToken)
      return post('/content/detail', {hash: hash})
    })
    .then(function(afterLogout){
      seen.afterLogout = afterLogout
    })
}

main().then(function(){
  process.stdout.write(JSON.stringify(seen) + '\n')
}, function(err){
  process.stdout.write(JSON.stringify({error: String(err && err.stack || err), seen: seen}) +
    '\n')
  process.exitCode = 1
})
